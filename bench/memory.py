"""memory: server RSS idle and with N idle WebSocket connections → KiB per idle connection.

The server is warmed first (20 connections opened and closed) so one-time costs — imports,
caches, the first JWT check — are not charged to the connections. Each count is measured
after a settle pause. KiB/conn = (RSS with N − warm idle RSS) / N; the marginal figure is
between consecutive counts. Target: ≤ 16 KiB per idle connection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from bench import harness as h

NAME = "memory"
TARGET_KIB = 16.0
SETTLE = 3.0
WARM = 20


async def scenario(b: h.Backend, server: h.Server, app: h.BenchApp, args: argparse.Namespace,
                   notes: h.Notes) -> dict[str, Any]:
    stats = h.DeliveryStats()
    pid = server.pid
    await asyncio.sleep(1.0)
    boot = h.rss_kib(pid)
    warm = h.Fleet(args.ws_client, server.port, app, stats)
    await warm.grow(WARM)
    await warm.close()
    await asyncio.sleep(SETTLE)
    idle = h.rss_kib(pid)
    gen_idle = h.rss_kib(os.getpid())
    fleet = h.Fleet(args.ws_client, server.port, app, h.DeliveryStats())
    points: list[dict[str, Any]] = []
    prev_n, prev_rss = 0, idle
    try:
        for n in sorted(args.clients):
            print(f"[{NAME}] {b.name}: opening idle clients up to {n:,} ({args.ws_client}) …", flush=True)
            took = await fleet.grow(n)
            await asyncio.sleep(SETTLE)
            rss = h.rss_kib(pid)
            opened = len(fleet)
            points.append({
                "clients": opened,
                "server_rss_kib": rss,
                "delta_kib": rss - idle,
                "kib_per_connection": round((rss - idle) / opened, 2) if opened else None,
                "marginal_kib_per_connection": round((rss - prev_rss) / (opened - prev_n), 2) if opened > prev_n else None,
                "generator_rss_kib": h.rss_kib(os.getpid()),
                "generator_kib_per_connection": round((h.rss_kib(os.getpid()) - gen_idle) / opened, 2) if opened else None,
                "connect_seconds": round(took, 2),
                "failures": dict(fleet.failed),
            })
            if fleet.failed:
                notes.add(f"{b.name}/{n}: {sum(fleet.failed.values())} clients failed to open: {dict(fleet.failed)}")
            prev_n, prev_rss = opened, rss
    finally:
        await fleet.close()
    await asyncio.sleep(SETTLE)
    after = h.rss_kib(pid)
    if stats.closes or fleet.stats.closes:
        closes = dict(stats.closes + fleet.stats.closes)
        closes.pop("connection lost", None)  # our own closes at the end
        if closes:
            notes.add(f"{b.name}: connections closed by the server: {closes}")
    return {"backend": b.name, "label": b.label, "ws_client": args.ws_client, "server_rss_kib_boot": boot,
            "server_rss_kib_idle_warm": idle, "points": points, "server_rss_kib_after_close": after}


def run(args: argparse.Namespace, notes: h.Notes) -> dict[str, Any]:
    backends = args.backends or ["sqlite"]
    result: dict[str, Any] = {"settings": {"clients": args.clients, "ws_client": args.ws_client, "settle_s": SETTLE,
                                           "warm_connections": WARM},
                              "target_kib_per_connection": TARGET_KIB, "runs": []}
    rows = []
    for name in backends:
        print(f"\n[{NAME}] {name}: setting up …", flush=True)
        with h.backend(name) as b:
            app = h.create_bench_app(b)
            with h.Server(b) as server:
                res = h.run_async(scenario(b, server, app, args, notes))
                errors = server.log_errors()
                if errors:
                    res["server_log_errors"] = errors
                    notes.add(f"{name}: server logged errors, e.g. {errors[0][:160]}")
        result["runs"].append(res)
        rows.append([b.label, 0, round(res["server_rss_kib_idle_warm"] / 1024, 1), None, None, None, None])
        for p in res["points"]:
            rows.append([b.label, p["clients"], round(p["server_rss_kib"] / 1024, 1), round(p["delta_kib"] / 1024, 1),
                         p["kib_per_connection"], p["marginal_kib_per_connection"],
                         (p["kib_per_connection"] or 0) <= TARGET_KIB])
        rows.append([b.label + " (all closed)", 0, round(res["server_rss_kib_after_close"] / 1024, 1), None, None, None,
                     None])
    h.print_table(f"memory — server RSS with idle WebSocket connections (client {args.ws_client}); target ≤ "
                  f"{TARGET_KIB:.0f} KiB/conn",
                  ["backend", "clients", "RSS MiB", "Δ MiB", "KiB/conn", "marginal KiB/conn", "met"], rows)
    return result
