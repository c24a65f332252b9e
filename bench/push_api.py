"""push_api: signed pushes per second against one instance.

For each backend (MariaDB + Redis first, then the single-node SQLite + memory default):
1. single pushes (`POST /api/v1/push`, one channel each, cycling over 50 channels) from
   `concurrency` keep-alive connections for `duration` seconds → accepted pushes/s, p50/p99;
2. batches of 100 (`POST /api/v1/push/batch`) the same way → messages/s.

Targets reported against: ≥ 3,000 single pushes/s; ≥ 20,000 messages/s via batch.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import time
from typing import Any

import msgspec

from bench import harness as h

NAME = "push_api"
CHANNELS = [f"bench.c{i}" for i in range(50)]
PAD = "x" * 60  # with the other fields, ~100 bytes of `data`
BATCH = 100
TARGET_SINGLE = 3_000
TARGET_BATCH_MSGS = 20_000
WARMUP = 1.5


def _message(i: int) -> dict[str, Any]:
    return {"channels": [CHANNELS[i % len(CHANNELS)]], "event": "bench.push", "data": {"n": i, "text": PAD}}


def single_bodies() -> list[bytes]:
    """Encoded once; request i uses body i % 50, so consecutive requests hit distinct channels."""
    return [msgspec.json.encode(_message(i)) for i in range(len(CHANNELS))]


def batch_bodies() -> list[bytes]:
    return [msgspec.json.encode({"messages": [_message(k + j) for j in range(BATCH)]}) for k in range(len(CHANNELS))]


async def drive(
    server: h.Server,
    app: h.BenchApp,
    *,
    path: str,
    bodies: list[bytes],
    per_request: int,
    duration: float,
    concurrency: int,
    client: str,
    profile_out: Any,
) -> dict[str, Any]:
    """Closed-loop load: each worker sends its next request as soon as the previous one answered.

    Counted: requests that complete inside the measured window (after WARMUP seconds).
    """
    signer = h.Signer(app.key_id, app.key_secret)
    statuses: collections.Counter[int] = collections.Counter()
    latencies: list[float] = []
    accepted = 0
    now = time.perf_counter()
    t_start = now + WARMUP
    t_end = t_start + duration
    meter = h.CpuMeter({"server": server.pid, "generator": os.getpid()})
    prof: h.Profiler | None = None

    async def window() -> None:
        nonlocal prof
        await asyncio.sleep(max(0.0, t_start - time.perf_counter()))
        meter.start()
        if profile_out is not None:
            prof = h.Profiler(server.pid, duration, profile_out)

    async def worker(poster: Any, wid: int) -> None:
        nonlocal accepted
        i = wid
        n = len(bodies)
        while True:
            t0 = time.perf_counter()
            if t0 >= t_end:
                return
            status, data = await poster.post(path, bodies[i % n])
            t1 = time.perf_counter()
            i += concurrency
            if t_start <= t1 <= t_end:
                statuses[status] += 1
                latencies.append(t1 - t0)
                if status == 202:
                    accepted += 1
                elif status == 200 and per_request > 1:
                    accepted += data.count(b'"status":202')
            if status == 0:
                await asyncio.sleep(0.05)  # connection refused or dropped: do not spin

    async with h.posters(client, server.port, signer, concurrency) as ps:
        timer = asyncio.create_task(window())
        await asyncio.gather(*(worker(p, i) for i, p in enumerate(ps)))
        await timer
        cpu = meter.stop()
    requests = len(latencies)
    ok = statuses.get(202, 0) + statuses.get(200, 0)
    return {
        "requests": requests,
        "requests_per_s": round(requests / duration, 1),
        "accepted_messages": accepted,
        "messages_per_s": round(accepted / duration, 1),
        "errors": {str(k): v for k, v in sorted(statuses.items()) if k not in (200, 202)},
        "ok_requests": ok,
        "p50_ms": h.ms(h.percentile(latencies, 50)),
        "p99_ms": h.ms(h.percentile(latencies, 99)),
        "max_ms": h.ms(max(latencies) if latencies else None),
        "cpu_pct": cpu,
        "generator_bound": h.generator_bound(cpu),
        "server_rss_kib": h.rss_kib(server.pid),
        "profile": prof.finish() if prof else None,
    }


TRIALS = 3


def run(args: argparse.Namespace, notes: h.Notes) -> dict[str, Any]:
    backends = args.backends or ["mariadb", "sqlite"]
    out: dict[str, Any] = {
        "settings": {
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "batch_concurrency": args.batch_concurrency,
            "http_client": args.client,
            "batch_size": BATCH,
            "channels": len(CHANNELS),
            "warmup_s": WARMUP,
        },
        "targets": {"single_pushes_per_s": TARGET_SINGLE, "batch_messages_per_s": TARGET_BATCH_MSGS},
        "runs": [],
    }
    rows = []
    singles, batches = single_bodies(), batch_bodies()
    for name in backends:
        print(f"\n[{NAME}] {name}: setting up …", flush=True)
        with h.backend(name) as b:
            app = h.create_bench_app(b)
            with h.Server(b) as server:
                run_out: dict[str, Any] = {"backend": b.name, "label": b.label}
                for mode, path, bodies, per, conc, target in (
                    ("single", "/api/v1/push", singles, 1, args.concurrency, TARGET_SINGLE),
                    ("batch", "/api/v1/push/batch", batches, BATCH, args.batch_concurrency, TARGET_BATCH_MSGS),
                ):
                    print(
                        f"[{NAME}] {name}: {mode} pushes for {args.duration:.0f} s at concurrency {conc} …", flush=True
                    )
                    prof_out = h.profile_path(NAME, args.tag, name, mode) if args.profile else None
                    # Median of TRIALS runs by accepted messages/s (profiled, if asked, on the first only).
                    trials = [
                        h.run_async(
                            drive(
                                server,
                                app,
                                path=path,
                                bodies=bodies,
                                per_request=per,
                                duration=args.duration,
                                concurrency=conc,
                                client=args.client,
                                profile_out=prof_out if i == 0 else None,
                            )
                        )
                        for i in range(1 if args.quick else TRIALS)
                    ]
                    ranked = sorted(trials, key=lambda r: r["messages_per_s"])
                    res = dict(ranked[len(ranked) // 2])
                    res["profile"] = trials[0]["profile"]
                    res["trials_messages_per_s"] = [t["messages_per_s"] for t in trials]
                    if res["accepted_messages"] == 0:
                        raise RuntimeError(
                            f"push_api {name}/{mode}: the server accepted nothing (errors {res['errors']})"
                        )
                    res["target"] = target
                    res["meets_target"] = res["messages_per_s"] >= target
                    run_out[mode] = res
                    if res["generator_bound"]:
                        notes.add(f"{name}/{mode}: generator at {res['cpu_pct']['generator']}% CPU — generator-bound")
                    if h.foreign_load(res["cpu_pct"]):
                        notes.add(
                            f"{name}/{mode}: other processes used {res['cpu_pct']['others']}% CPU meanwhile "
                            "— figures disturbed; rerun on a quiet machine"
                        )
                    if res["errors"]:
                        notes.add(f"{name}/{mode}: non-2xx answers {res['errors']}")
                    rows.append(
                        [
                            b.label,
                            mode,
                            res["requests_per_s"],
                            res["messages_per_s"],
                            target,
                            res["meets_target"],
                            res["p50_ms"],
                            res["p99_ms"],
                            res["cpu_pct"]["server"],
                            res["cpu_pct"]["generator"],
                            round(res["cpu_pct"].get("mariadb", 0.0) + res["cpu_pct"].get("redis", 0.0), 1),
                            res["cpu_pct"]["others"],
                            sum(res["errors"].values()),
                        ]
                    )
                    h.print_profile(f"{name}/{mode}", res["profile"] or {})
                errors = server.log_errors()
                if errors:
                    run_out["server_log_errors"] = errors
                    notes.add(f"{name}: server logged errors, e.g. {errors[0][:160]}")
                out["runs"].append(run_out)
    h.print_table(
        f"push_api — {args.duration:.0f} s per phase, single at concurrency {args.concurrency}, "
        f"batches of {BATCH} at concurrency {args.batch_concurrency}, client {args.client}",
        [
            "backend",
            "mode",
            "req/s",
            "msgs/s",
            "target",
            "met",
            "p50 ms",
            "p99 ms",
            "srv CPU%",
            "gen CPU%",
            "mariadb+redis CPU%",
            "other CPU%",
            "errors",
        ],
        rows,
    )
    return out
