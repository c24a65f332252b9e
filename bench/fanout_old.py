"""fanout: broadcast deliveries per second to N WebSocket clients on one instance.

The generator (CPU 1) opens N clients for distinct users u0..uN-1 (all auto-subscribed to
`broadcast`), then publishes broadcast messages (~100-byte `data`) through the signed batch push
API at increasing rates, `step_seconds` each. Deliveries are counted on the hot path from the
frames' first bytes; every 97th message frame is parsed for latency: `e2e` from the send time
the generator put into `data.t`, and `from ts` from the server's own timestamp.

A step is *sustainable* when ≥ 99.9 % of the expected deliveries (accepted messages × clients)
arrived by one second after the step ended, the publisher kept its rate (its last batch went
out within 5 % of the step's length: the push API shares the server's core with the fan-out),
and the deliveries received during the step reached 90 % of the offered rate (see `judge`). After each step the
generator waits for the backlog to drain, so steps do not overlap. The ramp stops after two
consecutive unsustainable steps. Target: ≥ 80,000 deliveries/s at 5,000 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import time
from typing import Any

from bench import harness as h

NAME = "fanout"
DEFAULT_RATES = [10_000, 20_000, 40_000, 60_000, 80_000, 100_000, 120_000, 160_000, 200_000]
TARGET = 80_000
TARGET_CLIENTS = 5_000
GRACE = 1.0
SUSTAINED = 0.999
IN_WINDOW = 0.9
PUBLISHERS = 4
PAD = "x" * 60  # `{"t":…,"s":…,"p":"xx…"}` ≈ 100 bytes


class Publisher:
    """Paced broadcast publishing through POST /api/v1/push/batch (≤ 100 messages per request)."""

    def __init__(self, posters: list[Any]) -> None:
        self.free: asyncio.Queue[Any] = asyncio.Queue()
        for p in posters:
            self.free.put_nowait(p)
        self.seq = 0

    def body(self, k: int) -> bytes:
        t = time.time()
        seq = self.seq
        self.seq += k
        items = ",".join(
            f'{{"broadcast":true,"event":"bench.fanout","data":{{"t":{t:.6f},"s":{seq + j},"p":"{PAD}"}}}}'
            for j in range(k)
        )
        return f'{{"messages":[{items}]}}'.encode()

    async def run(self, rate: float, seconds: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        total = max(1, round(rate * seconds))
        sent = accepted = 0
        errors: collections.Counter[str] = collections.Counter()
        tasks: set[asyncio.Task[None]] = set()

        async def send(poster: Any, k: int) -> None:
            nonlocal accepted
            try:
                status, data = await poster.post("/api/v1/push/batch", self.body(k))
                if status == 200:
                    ok = data.count(b'"status":202')
                    accepted += ok
                    if ok < k:
                        errors["item refused"] += k - ok
                else:
                    errors[str(status)] += k
            finally:
                self.free.put_nowait(poster)

        start = loop.time()
        while sent < total:
            elapsed = loop.time() - start
            if elapsed >= seconds:
                break
            due = min(int(rate * elapsed) + 1, total) - sent
            while due > 0:
                poster = await self.free.get()
                k = min(100, due)
                sent += k
                due -= k
                task = asyncio.create_task(send(poster, k))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(0.005)
        took = max(loop.time() - start, seconds)  # when the last batch was sent (or the step's length)
        if tasks:
            await asyncio.gather(*tasks)
        return {"wanted": total, "sent": sent, "accepted": accepted, "publish_seconds": round(took, 2),
                "publish_rate": round(accepted / took, 1), "errors": dict(errors)}


async def drain(stats: h.DeliveryStats, quiet: float = 0.5, limit: float = 10.0) -> float:
    """Wait until no frame arrived for `quiet` seconds (at most `limit`); returns seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        await asyncio.sleep(0.1)
        if time.monotonic() - stats.last_frame >= quiet:
            break
    return time.monotonic() - t0


async def step(target: int, seconds: float, fleet: h.Fleet, stats: h.DeliveryStats, pub: Publisher,
               server: h.Server, profile_out: Any = None) -> dict[str, Any]:
    n = len(fleet) - sum(stats.closes.values())
    rate = target / n
    stats.reset_samples()
    base = stats.messages
    prof = h.Profiler(server.pid, seconds, profile_out) if profile_out is not None else None
    meter = h.CpuMeter({"server": server.pid, "generator": os.getpid()}).start()
    t0 = time.monotonic()
    published = await pub.run(rate, seconds)
    t_end = time.monotonic()
    cpu = meter.stop()
    in_window = stats.messages - base
    await asyncio.sleep(GRACE)
    with_grace = stats.messages - base
    drained_s = await drain(stats)
    eventually = stats.messages - base
    expected = published["accepted"] * n
    window = t_end - t0
    ratio = with_grace / expected if expected else 0.0
    res = {
        "clients": n,
        "offered_deliveries_per_s": target,
        "publish_msgs_per_s": round(rate, 2),
        **published,
        "expected_deliveries": expected,
        "delivered_in_window": in_window,
        "delivered_with_grace": with_grace,
        "delivered_eventually": eventually,
        "delivered_pct": round(100.0 * ratio, 3),
        "deliveries_per_s": round(in_window / window, 1),
        "window_s": round(window, 2),
        "drain_s": round(drained_s, 2),
        "e2e_p50_ms": h.ms(h.percentile(stats.e2e, 50)),
        "e2e_p99_ms": h.ms(h.percentile(stats.e2e, 99)),
        "from_ts_p50_ms": h.ms(h.percentile(stats.from_ts, 50)),
        "from_ts_p99_ms": h.ms(h.percentile(stats.from_ts, 99)),
        "latency_samples": len(stats.e2e),
        "cpu_pct": cpu,
        "generator_bound": h.generator_bound(cpu),
        "closed_clients": dict(stats.closes),
        "profile": await asyncio.to_thread(prof.finish) if prof else None,
    }
    res["sustainable"] = judge(res, seconds)
    return res


def judge(res: dict[str, Any], seconds: float) -> bool:
    """Sustainable: ≥ 99.9 % delivered by the end of the grace second, the publisher kept its rate
    (nearly every wanted message accepted, the last batch sent within 5 % of the step — the push
    API shares the core with the fan-out), and the frames received *during* the step came to at
    least 90 % of the offered rate (so the grace second cannot hide a growing backlog)."""
    kept_rate = res["accepted"] >= 0.95 * res["wanted"] and res["publish_seconds"] <= seconds * 1.05 + 0.1
    return (res["delivered_pct"] >= 100.0 * SUSTAINED and kept_rate
            and res["deliveries_per_s"] >= IN_WINDOW * res["offered_deliveries_per_s"])


async def scenario(b: h.Backend, server: h.Server, app: h.BenchApp, args: argparse.Namespace,
                   notes: h.Notes) -> dict[str, Any]:
    stats = h.DeliveryStats(sample_every=97)
    fleet = h.Fleet(args.ws_client, server.port, app, stats)
    signer = h.Signer(app.key_id, app.key_secret)
    rates = args.rates or DEFAULT_RATES
    out: list[dict[str, Any]] = []
    async with h.posters("raw", server.port, signer, PUBLISHERS) as ps:
        pub = Publisher(ps)
        keepalive = asyncio.create_task(fleet.keepalive())
        try:
            for n in sorted(args.clients):
                print(f"[{NAME}] {b.name}: opening clients up to {n:,} ({args.ws_client}) …", flush=True)
                before = len(fleet)
                meter = h.CpuMeter({"server": server.pid, "generator": os.getpid()}).start()
                took = await fleet.grow(n)
                connect_cpu = meter.stop()
                print(f"  {len(fleet) - before:,} clients opened in {took:.1f} s "
                      f"({(len(fleet) - before) / max(took, 1e-9):,.0f}/s; srv {connect_cpu['server']}% "
                      f"gen {connect_cpu['generator']}% CPU)", flush=True)
                await asyncio.sleep(1.0)
                if fleet.failed:
                    notes.add(f"{b.name}/{n}: {sum(fleet.failed.values())} clients failed to open: {dict(fleet.failed)}")
                per_n: dict[str, Any] = {
                    "clients": len(fleet), "connect_seconds": round(took, 2),
                    "connects_per_s": round((len(fleet) - before) / max(took, 1e-9), 1), "connect_cpu_pct": connect_cpu,
                    "connect_failures": dict(fleet.failed), "server_rss_kib": h.rss_kib(server.pid),
                    "generator_rss_kib": h.rss_kib(os.getpid()), "steps": []}
                failures_in_a_row = 0
                for target in rates:
                    prof_out = h.profile_path(NAME, args.tag, b.name, n, target) if args.profile and target == TARGET else None
                    res = await step(target, args.step_seconds, fleet, stats, pub, server, prof_out)
                    if res["profile"]:
                        h.print_profile(f"{b.name}/{n} clients @ {target:,}/s", res["profile"])
                    per_n["steps"].append(res)
                    flag = "" if res["sustainable"] else "  (not sustained)"
                    print(f"  {len(fleet):>6,} clients · offered {target:>8,}/s → {res['deliveries_per_s']:>10,.0f}/s "
                          f"· {res['delivered_pct']:7.3f}% · srv {res['cpu_pct']['server']:5.1f}% "
                          f"gen {res['cpu_pct']['generator']:5.1f}% other {res['cpu_pct']['others']:5.1f}%{flag}",
                          flush=True)
                    if res["generator_bound"]:
                        notes.add(f"{b.name}/{n} clients @ {target:,}/s: generator at {res['cpu_pct']['generator']}% "
                                  "CPU — generator-bound")
                    if h.foreign_load(res["cpu_pct"]):
                        notes.add(f"{b.name}/{n} clients @ {target:,}/s: other processes used "
                                  f"{res['cpu_pct']['others']}% CPU — figures disturbed")
                    if res["errors"]:
                        notes.add(f"{b.name}/{n} clients @ {target:,}/s: publish errors {res['errors']}")
                    failures_in_a_row = 0 if res["sustainable"] else failures_in_a_row + 1
                    if failures_in_a_row >= 2:
                        break
                good = [s for s in per_n["steps"] if s["sustainable"]]
                per_n["sustainable_deliveries_per_s"] = max((s["offered_deliveries_per_s"] for s in good), default=0)
                per_n["peak_deliveries_per_s"] = max((s["deliveries_per_s"] for s in per_n["steps"]), default=0)
                per_n["server_rss_kib_after"] = h.rss_kib(server.pid)
                out.append(per_n)
                if stats.closes:
                    notes.add(f"{b.name}/{n}: clients closed by the server or lost: {dict(stats.closes)}")
        finally:
            keepalive.cancel()
            await fleet.close()
    return {"backend": b.name, "label": b.label, "ws_client": args.ws_client, "by_clients": out}


def run(args: argparse.Namespace, notes: h.Notes) -> dict[str, Any]:
    backends = args.backends or ["sqlite"]
    result: dict[str, Any] = {
        "settings": {"step_seconds": args.step_seconds, "grace_s": GRACE, "sustained_ratio": SUSTAINED,
                     "clients": args.clients, "ws_client": args.ws_client, "publish_connections": PUBLISHERS,
                     "rates": args.rates or DEFAULT_RATES},
        "target": {"deliveries_per_s": TARGET, "clients": TARGET_CLIENTS}, "runs": []}
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
        for per_n in res["by_clients"]:
            for s in per_n["steps"]:
                rows.append([b.label, per_n["clients"], s["offered_deliveries_per_s"], s["publish_msgs_per_s"],
                             s["publish_rate"], s["deliveries_per_s"], s["delivered_pct"], s["sustainable"], s["e2e_p50_ms"],
                             s["e2e_p99_ms"], s["cpu_pct"]["server"], s["cpu_pct"]["generator"],
                             s["cpu_pct"]["others"]])
    h.print_table(
        f"fanout — broadcast, {args.step_seconds:.0f} s per step, client {args.ws_client}; "
        f"sustainable = ≥ {SUSTAINED:.1%} delivered within {GRACE:.0f} s",
        ["backend", "clients", "offered/s", "msgs/s wanted", "msgs/s accepted", "delivered/s", "delivered %", "ok",
         "e2e p50 ms", "e2e p99 ms", "srv CPU%", "gen CPU%", "other CPU%"],
        rows,
    )
    summary = []
    for r in result["runs"]:
        for per_n in r["by_clients"]:
            summary.append([r["label"], per_n["clients"], per_n["connect_seconds"], per_n["connects_per_s"],
                            per_n["sustainable_deliveries_per_s"], per_n["peak_deliveries_per_s"],
                            TARGET if per_n["clients"] >= TARGET_CLIENTS else None,
                            per_n["server_rss_kib_after"] // 1024])
    h.print_table("fanout — summary", ["backend", "clients", "connect s", "connects/s", "sustainable/s", "peak/s",
                                       "target", "srv RSS MiB"], summary)
    return result
