"""e2e: open-loop latency through the signed push API and the full durable path, 1,000 idle connections around.

One Pushwire instance on CPU 0 with MariaDB + Redis + Kafka (Tansu) + etcd (backend `durable`).
The generator (CPU 1) opens 1,000 idle clients and one subscriber of `room.lat`, then sends
signed `POST /api/v1/push` at a fixed offered rate (200/s, 1,000/s): push i is *intended* at
start + i/rate whether or not earlier pushes have been answered (open loop; a push waits for a
free connection of the pool of `POOL`). Latency = receipt time at the subscriber − intended send
time (no coordinated omission), into an HDR histogram (µs, 3 significant digits). A push not
received `TIMEOUT` s after the last send is recorded at that censored value and counted as
`missing` (pushes still waiting for a connection or an answer then are cancelled). Median of 3 runs per rate.
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
from pushwire.cli.tenancy import mint_token

NAME = "e2e"
POOL = 64
TIMEOUT = 5.0
IDLE = 1_000
TARGET_P99_MS = 20.0


async def one_run(server: h.Server, app: h.BenchApp, sub: L.Client, rate: int, seconds: float) -> dict[str, Any]:
    signer = h.Signer(app.key_id, app.key_secret)
    n = int(rate * seconds)
    stats = sub.stats
    stats.sample_every = 1
    stats.latency = []
    statuses: dict[int, int] = {}
    async with h.posters("raw", server.port, signer, POOL) as conns:
        free: asyncio.Queue[Any] = asyncio.Queue()
        for c in conns:
            free.put_nowait(c)

        async def push(i: int, t_wall: float) -> None:
            c = await free.get()
            try:
                body = f'{{"channels":["room.lat"],"event":"lat","data":{{"t":{t_wall:.6f},"s":{i}}}}}'.encode()
                status, _ = await c.post("/api/v1/push", body)
                statuses[status] = statuses.get(status, 0) + 1
            finally:
                free.put_nowait(c)

        meter = h.CpuMeter({"server": server.pid, "generator": os.getpid()}).start()
        tasks = []
        w0, m0 = time.time() + 0.05, time.monotonic() + 0.05
        stats.min_t = w0
        for i in range(n):
            delay = m0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(push(i, w0 + i / rate)))
        deadline = time.monotonic() + TIMEOUT
        while len(stats.latency) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        unsent = sum(1 for t in tasks if not t.done())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        cpu = meter.stop()
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
    return {
        "rate": rate,
        "seconds": seconds,
        "sent": n,
        "received": received,
        "missing": missing,
        "statuses": statuses,
        "unanswered_at_timeout": unsent,
        **{f"{k}_ms": v for k, v in q.items()},
        "max_ms": round(hist.get_max_value() / 1000, 2),
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
                r = await one_run(server, app, sub, rate, args.e2e_seconds)
                runs.append(r)
                print(
                    f"  {rate:>5}/s run {k + 1}: p50 {r['p50_ms']} p99 {r['p99_ms']} p99.9 {r['p999_ms']} max {r['max_ms']} ms"
                    f" · received {r['received']}/{r['sent']} · srv {r['cpu_pct']['server']}% gen {r['cpu_pct']['generator']}%",
                    flush=True,
                )
                if r["missing"]:
                    notes.add(
                        f"e2e {rate}/s run {k + 1}: {r['missing']} pushes not received within {TIMEOUT:.0f} s "
                        "(recorded at the censored latency)"
                    )
                await asyncio.sleep(1.0)
            med = {k: statistics.median(r[k] for r in runs) for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms")}
            out.append(
                {
                    "rate": rate,
                    "runs": runs,
                    "median": med,
                    "generator_bound": statistics.median(r["cpu_pct"]["generator"] for r in runs)
                    > h.GENERATOR_BOUND_PCT,
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
    return {
        "settings": {
            "rates": args.e2e_rates,
            "seconds": args.e2e_seconds,
            "pool": POOL,
            "timeout_s": TIMEOUT,
            "idle_connections": args.e2e_idle,
            "backend": b.label,
        },
        "target_p99_ms_at_1000": TARGET_P99_MS,
        "rates": rates,
    }
