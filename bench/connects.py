"""connects: how many clients a second each server takes, handshake to greeting, 100 in flight.

For each server (Pushwire single-node, bare websockets, bare picows): start it on CPU 0, then
`TRIALS` times open N picows clients from CPU 1 (100 connecting at once; a Pushwire client counts
when its `welcome` frame arrived — token checked, limits counted, presence route, positions and
unread replay done — a peer's when its handshake completed), time it, read the server's CPU over
the window, close them all and settle. Each Pushwire trial uses new user ids (a reconnect herd of
known users is the recovery scenario's). Figure: the median connects/s and server CPU µs per
connect; target ≥ 0.5 × bare websockets' rate (issue 13).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from bench import harness as h
from bench import loadgen as L
from bench import profiling as P
from bench import servers as S

NAME = "connects"
TRIALS = 3
IN_FLIGHT = 100
TARGET_RATIO = 0.5
SETTLE = 1.0


async def trials(pid: int, url_for: Any, dialect: str, n: int) -> list[dict[str, Any]]:
    out = []
    for k in range(TRIALS):
        fleet = L.Fleet(lambda i, k=k: url_for(k, i), dialect)
        meter = h.CpuMeter({"server": pid, "generator": os.getpid()}).start()
        t0 = time.monotonic()
        took = await fleet.grow(n, concurrency=IN_FLIGHT)
        cpu = meter.stop()
        took = max(took, time.monotonic() - t0)
        rate = len(fleet) / took
        cpu_us = cpu["server"] / 100 * took / max(1, len(fleet)) * 1e6
        out.append(
            {
                "connected": len(fleet),
                "seconds": round(took, 3),
                "per_s": round(rate, 1),
                "server_cpu_pct": cpu["server"],
                "server_cpu_us_per_connect": round(cpu_us, 1),
                "others_pct": cpu["others"],
            }
        )
        print(
            f"  {dialect:<9} trial {k + 1}: {len(fleet):,} in {took:.2f} s → {rate:8,.0f}/s · "
            f"server {cpu['server']}% CPU, {cpu_us:,.0f} µs each · gen {cpu['generator']}% · others {cpu['others']}%",
            flush=True,
        )
        await fleet.close()
        await asyncio.sleep(SETTLE)
    return out


def summarise(server: str, ts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "server": server,
        "trials": ts,
        "per_s": statistics.median(t["per_s"] for t in ts),
        "server_cpu_us_per_connect": statistics.median(t["server_cpu_us_per_connect"] for t in ts),
    }


def run(args: argparse.Namespace, notes: h.Notes) -> dict[str, Any]:
    n = 500 if args.quick else 2000
    runs: list[dict[str, Any]] = []
    for name in [s for s in args.servers if s in ("pushwire", "litestar-ws", "websockets", "picows")]:
        print(f"\n[{NAME}] {S.LABELS[name]}: {n:,} clients × {TRIALS}, {IN_FLIGHT} in flight", flush=True)
        if name == "pushwire":
            with h.backend("sqlite") as b:
                app = h.create_bench_app(b)
                with h.Server(b) as srv:
                    base = f"ws://127.0.0.1:{srv.port}/api/v1/ws?token="
                    prof = P.Profiler(srv.pid, 60, P.profile_path(NAME, args.tag)) if args.profile else None
                    ts = h.run_async(
                        trials(srv.pid, lambda k, i, base=base, app=app: base + app.token(f"c{k}-{i}"), "pushwire", n)
                    )
                    if prof is not None:
                        prof.stop()
                        P.print_profile("pushwire connects", prof.finish(top=25), top=25)
                    errors = srv.log_errors()
                    if errors:
                        notes.add(f"pushwire server log errors: {errors[:3]}")
        else:
            with S.peer(name) as proc:
                ts = h.run_async(
                    trials(proc.pid, lambda k, i, p=proc.port, name=name: S.peer_url(name, p), S.dialect(name), n)
                )
        for t in ts:
            if h.foreign_load({"others": t["others_pct"]}):
                notes.add(f"{name}: other processes used {t['others_pct']}% CPU in a trial")
        runs.append(summarise(name, ts))
    ref = next((r["per_s"] for r in runs if r["server"] == "websockets"), None)
    for r in runs:
        r["ratio_to_websockets"] = round(r["per_s"] / ref, 3) if ref else None
    return {
        "settings": {"clients": n, "trials": TRIALS, "in_flight": IN_FLIGHT},
        "target_ratio": TARGET_RATIO,
        "runs": runs,
    }
