"""e2e: open-loop latency through the signed push API and the full durable path, 1,000 idle connections around.

One Pushwire instance (default settings) on CPU 0 with MariaDB + Redis + Kafka (Tansu) + etcd
(backend `durable`). The generator (CPU 1) opens 1,000 idle clients and one subscriber of
`room.lat`, then sends `POST /api/v1/push` at a fixed offered rate (20/s — the idle figure —,
200/s, 1,000/s). Every request is PRE-SIGNED before the run (bench/rawload.py; its body carries
its intended send time `t`) and sent over raw keep-alive sockets: push i is *intended* at
start + i/rate whether or not earlier pushes have been answered (open loop; it goes out on the
next free connection of a pool of `POOL` — 8 below 100/s — and is counted as `queued` when none
is free). Latency = receipt time at the subscriber − intended send time (no coordinated
omission), into an HDR histogram (µs, 3 significant digits). A push not received `TIMEOUT` s
after the last send is recorded at that censored value and counted as `missing`; `lost` =
answered 202 but not received `LOST_GRACE` s later still (a 202 is never followed by loss). Median of 3 runs per rate.

Goals: p99 ≤ 20 ms at 1,000 pushes/s with nothing lost; p50 ≤ 5 ms at the idle rate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

from hdrh.histogram import HdrHistogram

from bench import harness as h
from bench import loadgen as L
from bench import rawload as R
from pushwire.cli.tenancy import mint_token

NAME = "e2e"
POOL = 64
TIMEOUT = 5.0
LOST_GRACE = 2.0  # after TIMEOUT, for pushes answered 202 but not yet received
IDLE = 1_000
TARGET_P99_MS = 20.0  # at 1,000 pushes/s, nothing lost
IDLE_RATE = 20  # the "idle" figure: pushes/s low enough that nothing queues anywhere
TARGET_IDLE_P50_MS = 5.0


def _pool(rate: int) -> int:
    """Connections of the sender's pool: enough for a stall of ~60 ms at 1,000/s without queueing; few
    at idle rates, so each is reused well inside uvicorn's 5 s keep-alive timeout."""
    return POOL if rate >= 100 else 8


async def one_run(
    server: h.Server, app: h.BenchApp, sub: L.Client, rate: int, seconds: float, profile_out: Any = None
) -> dict[str, Any]:
    n = max(1, int(rate * seconds))
    stats = sub.stats
    stats.sample_every = 1
    stats.latency = []
    stats.from_ts = []
    # Every request is signed before the window: its body carries its intended send time `t`
    # (wall clock), so the start is fixed first, with room for the signing.
    lead = 0.3 + n * 40e-6
    while True:
        w0 = time.time() + lead
        p0 = time.perf_counter() + lead
        bodies = [
            f'{{"channels":["room.lat"],"event":"lat","data":{{"t":{w0 + i / rate:.6f},"s":{i}}}}}'.encode()
            for i in range(n)
        ]
        reqs = R.presign(app.key_id, app.key_secret, server.port, "/api/v1/push", bodies, n)
        sender = R.OpenLoop(server.port, reqs, _pool(rate))
        await sender.open()
        if time.perf_counter() < p0 - 0.02:
            break
        sender.close()
        lead *= 2  # the signing and connecting took longer than planned: start again later
    stats.min_t = w0 - 1e-3
    meter = h.CpuMeter({"server": server.pid, "generator": os.getpid()})
    await asyncio.sleep(max(0.0, p0 - time.perf_counter()))
    meter.start()
    prof = h.Profiler(server.pid, seconds, profile_out) if profile_out is not None else None
    await sender.run(rate, p0)
    deadline = time.monotonic() + TIMEOUT
    while len(stats.latency) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    cpu = meter.stop()
    if prof is not None:
        h.print_profile(f"e2e {rate}/s", prof.finish())
    unanswered = n - len(sender.answers)
    sender.close()
    statuses = R.statuses(sender.answers)
    accepted = sum(1 for st, _ in sender.answers.values() if st == 202)
    # A push answered 202 just before the deadline may still be on its way: a short grace before
    # calling it lost (its latency, if it arrives, is recorded as measured).
    grace = time.monotonic() + LOST_GRACE
    while len(stats.latency) < accepted and time.monotonic() < grace:
        await asyncio.sleep(0.01)
    hist = HdrHistogram(1, 120_000_000, 3)
    for lat in stats.latency:
        hist.record_value(max(1, int(lat * 1e6)))
    received = len(stats.latency)
    missing = max(0, n - received)
    censored = time.time() - w0
    for _ in range(missing):
        hist.record_value(int(censored * 1e6))
    if received == 0:
        raise RuntimeError(f"e2e at {rate}/s: the subscriber received nothing (push statuses {statuses})")
    q = {f"p{p}".replace(".", ""): round(hist.get_value_at_percentile(p) / 1000, 2) for p in (50, 99, 99.9)}
    answer = sorted(lat for _, lat in sender.answers.values())
    return {
        "rate": rate,
        "seconds": seconds,
        "sent": n,
        "accepted": accepted,
        "received": received,
        "missing": missing,
        "lost": max(0, accepted - received),
        "statuses": statuses,
        "unanswered_at_timeout": unanswered,
        "pool": sender.pool,
        "queued": sender.queued,
        "max_queue": sender.max_pending,
        "resent": sender.resent,
        "presign_s": round(reqs.sign_seconds, 3),
        **{f"{k}_ms": v for k, v in q.items()},
        "max_ms": round(hist.get_max_value() / 1000, 2),
        "answer_p50_ms": h.ms(h.percentile(answer, 50)),
        "answer_p99_ms": h.ms(h.percentile(answer, 99)),
        "from_commit_p50_ms": h.ms(h.percentile(stats.from_ts, 50)),
        "cpu_pct": cpu,
        "generator_bound": h.generator_bound(cpu),
    }


async def scenario(server: h.Server, app: h.BenchApp, args: argparse.Namespace, notes: h.Notes) -> list[dict[str, Any]]:
    base = f"ws://127.0.0.1:{server.port}/api/v1/ws?token="
    idle = L.Fleet(lambda i: base + app.token(f"idle{i}"), "pushwire")
    keep = asyncio.create_task(idle.keepalive())
    try:
        await idle.grow(args.e2e_idle)
        token = mint_token(app.app_id, "sub", app.kid, app.client_secret, 3600, ["room.*"])
        sub = await L.connect(base + token, L.Stats(sample_every=1), "pushwire")
        sub.send('{"type":"subscribe","channel":"room.lat"}')
        # warm-up: the tenant topic is created and the router joins it on the first push
        signer = h.Signer(app.key_id, app.key_secret)
        async with h.posters("raw", server.port, signer, 1) as (c,):
            t0 = time.monotonic()
            while sub.stats.messages == 0:
                if time.monotonic() - t0 > 60:
                    raise RuntimeError("e2e: the warm-up push did not reach the subscriber within 60 s")
                await c.post("/api/v1/push", b'{"channels":["room.lat"],"event":"warm","data":{"t":0}}')
                await asyncio.sleep(1.0)
        await asyncio.sleep(2.0)
        out = []
        for rate in args.e2e_rates:
            runs = []
            for k in range(3):
                prof_out = h.profile_path("e2e", args.tag, rate) if args.profile and k == 0 else None
                r = await one_run(server, app, sub, rate, args.e2e_seconds, prof_out)
                runs.append(r)
                print(
                    f"  {rate:>5}/s run {k + 1}: p50 {r['p50_ms']} p99 {r['p99_ms']} p99.9 {r['p999_ms']} max {r['max_ms']} ms"
                    f" · received {r['received']}/{r['sent']} (accepted {r['accepted']}, lost {r['lost']})"
                    f" · queued {r['queued']} · srv {r['cpu_pct']['server']}% gen {r['cpu_pct']['generator']}%",
                    flush=True,
                )
                if r["generator_bound"]:
                    notes.add(f"e2e {rate}/s run {k + 1}: generator at {r['cpu_pct']['generator']}% — generator-bound")
                if r["queued"]:
                    notes.add(
                        f"e2e {rate}/s run {k + 1}: {r['queued']} pushes waited for a free connection "
                        f"(pool {r['pool']}, at most {r['max_queue']} waiting; counted from the intended time)"
                    )
                if r["missing"]:
                    notes.add(
                        f"e2e {rate}/s run {k + 1}: {r['missing']} pushes not received within {TIMEOUT:.0f} s "
                        "(recorded at the censored latency)"
                    )
                await asyncio.sleep(1.0)
            keys = ("p50_ms", "p99_ms", "p999_ms", "max_ms", "answer_p50_ms", "answer_p99_ms")
            med: dict[str, Any] = {k: statistics.median(r[k] or 0.0 for r in runs) for k in keys}
            for k in ("server", "generator"):
                med[f"{k}_cpu_pct"] = statistics.median(r["cpu_pct"].get(k, 0.0) for r in runs)
            out.append(
                {
                    "rate": rate,
                    "runs": runs,
                    "median": med,
                    "sent": sum(r["sent"] for r in runs),
                    "lost": sum(r["lost"] for r in runs),
                    "missing": sum(r["missing"] for r in runs),
                    "non_2xx": sum(v for r in runs for st, v in r["statuses"].items() if st != "202"),
                    "queued": sum(r["queued"] for r in runs),
                    "generator_bound": med["generator_cpu_pct"] > h.GENERATOR_BOUND_PCT,
                }
            )
        return out
    finally:
        keep.cancel()
        await idle.close()


def run(args: argparse.Namespace, notes: h.Notes) -> dict[str, Any]:
    print(
        f"\n[{NAME}] durable path (MariaDB + Redis + Kafka/Tansu + etcd), {args.e2e_idle:,} idle connections",
        flush=True,
    )
    with h.backend("durable") as b:
        app = h.create_bench_app(b)
        with h.Server(b) as server:
            rates = h.run_async(scenario(server, app, args, notes))
            errors = server.log_errors()
            if errors:
                notes.add(f"e2e: server logged errors, e.g. {errors[0][:160]}")
    rows = [
        [
            r["rate"],
            r["median"]["p50_ms"],
            r["median"]["p99_ms"],
            r["median"]["p999_ms"],
            r["median"]["max_ms"],
            r["lost"],
            r["missing"],
            r["non_2xx"],
            r["queued"],
            r["median"]["answer_p99_ms"],
            r["median"]["server_cpu_pct"],
            r["median"]["generator_cpu_pct"],
            r["generator_bound"],
        ]
        for r in rates
    ]
    h.print_table(
        f"e2e — open loop, pre-signed pushes, median of 3 runs of {args.e2e_seconds:.0f} s; latency = receipt at the "
        "subscriber − intended send time; lost/missing summed over the runs",
        [
            "pushes/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "lost",
            "missing",
            "non-2xx",
            "queued",
            "answer p99 ms",
            "srv CPU%",
            "gen CPU%",
            "gen-bound",
        ],
        rows,
    )
    return {
        "settings": {
            "rates": args.e2e_rates,
            "seconds": args.e2e_seconds,
            "pool": {str(r): _pool(r) for r in args.e2e_rates},
            "client": "raw pre-signed (bench/rawload.py)",
            "timeout_s": TIMEOUT,
            "idle_connections": args.e2e_idle,
            "backend": b.label,
        },
        "target_p99_ms_at_1000": TARGET_P99_MS,
        "target_idle_p50_ms": TARGET_IDLE_P50_MS,
        "idle_rate": IDLE_RATE,
        "rates": rates,
    }
