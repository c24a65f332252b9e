"""push_api: accepted pushes per second on the full stack, beside the limit of the stack.

Two servers, one after the other, each alone on CPU 0 (the generator on CPU 1):
1. the limit — `bench/peers/signed_post_server.py`: a bare Litestar POST under the same uvicorn
   settings as `pushwire run`, verifying the same HMAC signature with an in-memory key (no
   database, no cache);
2. Pushwire at its default settings on the full durable stack (MariaDB + Redis + Kafka/Tansu +
   etcd; backend `durable`).

For each: single pushes (`POST /api/v1/push`, one channel each, cycling over 50 channels) from
32 keep-alive connections, then batches of 100 (`POST /api/v1/push/batch`) from 8 — closed
loop, `WARMUP` s then `duration` s measured, median of 3 trials by messages/s. Requests are
PRE-SIGNED before each trial and sent over raw keep-alive sockets (bench/rawload.py).

Figures: requests/s, accepted messages/s, ratio to the limit, server CPU µs per accepted push
(CPU time of the server process in the window ÷ accepted pushes; "stack" adds MariaDB, Redis,
Tansu and etcd), p50/p99 request latency, non-2xx counts, server and generator CPU %.

Goals: single pushes ≥ 0.7 × the limit's single pushes in the same run; batch ≥ 30,000 messages/s.
"""

from __future__ import annotations

import argparse
from typing import Any

import msgspec

from bench import harness as h
from bench import rawload as R
from bench import servers

NAME = "push_api"
CHANNELS = [f"bench.c{i}" for i in range(50)]
PAD = "x" * 60  # with the other fields, ~100 bytes of `data`
BATCH = 100
TARGET_SINGLE_RATIO = 0.7  # × the limit's single pushes/s, same run
TARGET_BATCH_MSGS = 30_000
WARMUP = 1.5
TRIALS = 3
# Pre-signed requests per trial: first trial sized for this many requests/s (well above what one
# core answers), later trials for 2 × the rate seen; a trial that runs out is flagged and rerun larger.
FIRST_GUESS_REQ_S = {"single": 12_000, "batch": 3_000}
REF_LABEL = "bare Litestar signed POST (limit)"


def _message(i: int) -> dict[str, Any]:
    return {"channels": [CHANNELS[i % len(CHANNELS)]], "event": "bench.push", "data": {"n": i, "text": PAD}}


def single_bodies() -> list[bytes]:
    """Encoded once; request i uses body i % 50, so consecutive requests hit distinct channels."""
    return [msgspec.json.encode(_message(i)) for i in range(len(CHANNELS))]


def batch_bodies() -> list[bytes]:
    return [msgspec.json.encode({"messages": [_message(k + j) for j in range(BATCH)]}) for k in range(len(CHANNELS))]


def _count_single(status: int, _body: bytes) -> int:
    return 1 if status == 202 else 0


def _count_batch(status: int, body: bytes) -> int:
    return body.count(b'"status":202') if status == 200 else 0


def one_trial(
    port: int,
    pid: int,
    key: tuple[str, str],
    *,
    mode: str,
    duration: float,
    connections: int,
    capacity: int,
    profile_out: Any,
) -> dict[str, Any]:
    path, bodies, count = (
        ("/api/v1/push", single_bodies(), _count_single)
        if mode == "single"
        else ("/api/v1/push/batch", batch_bodies(), _count_batch)
    )
    reqs = R.presign(key[0], key[1], port, path, bodies, capacity)
    prof: list[h.Profiler] = []

    def start_profiler() -> None:
        prof.append(h.Profiler(pid, duration, profile_out))

    w = h.run_async(
        R.closed_loop(
            port,
            pid,
            reqs,
            connections=connections,
            warmup=WARMUP,
            duration=duration,
            count=count,
            keep_body=mode == "batch",
            on_start=start_profiler if profile_out is not None else None,
        )
    )
    wall = w.wall or duration
    requests = len(w.latencies)
    ok = w.statuses.get(202, 0) + w.statuses.get(200, 0)
    stack_s = sum(w.cpu_seconds.get(k, 0.0) for k in h.STACK)
    per_push = lambda s: round(1e6 * s / w.accepted, 1) if w.accepted else None  # noqa: E731
    return {
        "requests": requests,
        "requests_per_s": round(requests / wall, 1),
        "accepted_messages": w.accepted,
        "messages_per_s": round(w.accepted / wall, 1),
        "errors": {str(k): v for k, v in sorted(w.statuses.items()) if k not in (200, 202)},
        "ok_requests": ok,
        "p50_ms": h.ms(h.percentile(w.latencies, 50)),
        "p99_ms": h.ms(h.percentile(w.latencies, 99)),
        "max_ms": h.ms(max(w.latencies) if w.latencies else None),
        "window_s": round(wall, 3),
        "cpu_pct": w.cpu_pct,
        "cpu_seconds": w.cpu_seconds,
        "server_cpu_us_per_push": per_push(w.cpu_seconds.get("server", 0.0)),
        "stack_cpu_us_per_push": per_push(stack_s),
        "generator_bound": h.generator_bound(w.cpu_pct),
        "presigned": len(reqs),
        "presign_s": round(reqs.sign_seconds, 2),
        "presigned_exhausted": w.exhausted,
        "dropped_connections": w.dropped,
        "server_rss_kib": h.rss_kib(pid) if R._alive(pid) else None,
        "profile": prof[0].finish() if prof else None,
    }


def phases(
    label: str,
    port: int,
    pid: int,
    key: tuple[str, str],
    args: argparse.Namespace,
    notes: h.Notes,
    *,
    profile_name: str | None,
) -> dict[str, Any]:
    """Single then batch against one server; median of TRIALS trials each (one with --quick)."""
    out: dict[str, Any] = {}
    for mode, conc in (("single", args.concurrency), ("batch", args.batch_concurrency)):
        print(f"[{NAME}] {label}: {mode} for {args.duration:.0f} s, {conc} connections …", flush=True)
        guess = FIRST_GUESS_REQ_S[mode]
        trials: list[dict[str, Any]] = []
        for i in range(1 if args.quick else TRIALS):
            prof_out = h.profile_path(NAME, args.tag, profile_name, mode) if profile_name and i == 0 else None
            for attempt in range(2):  # a trial whose pre-signed stock ran out is rerun once, with 3 × as many
                capacity = int(guess * (WARMUP + args.duration) + 200)
                t = one_trial(
                    port,
                    pid,
                    key,
                    mode=mode,
                    duration=args.duration,
                    connections=conc,
                    capacity=capacity,
                    profile_out=prof_out if attempt == 0 else None,
                )
                if not t["presigned_exhausted"] or attempt == 1:
                    break
                notes.add(f"{label}/{mode}: {capacity:,} pre-signed requests ran out; trial rerun with 3 × as many")
                guess *= 3
            guess = max(t["requests_per_s"] * 2, 100)
            print(
                f"  trial {i + 1}: {t['requests_per_s']:,.0f} req/s · {t['messages_per_s']:,.0f} msgs/s · "
                f"p50 {t['p50_ms']} p99 {t['p99_ms']} ms · srv {t['cpu_pct'].get('server')}% "
                f"gen {t['cpu_pct'].get('generator')}% · {t['server_cpu_us_per_push']} µs/push · errors {t['errors']}",
                flush=True,
            )
            trials.append(t)
        ranked = sorted(trials, key=lambda r: r["messages_per_s"])
        res = dict(ranked[len(ranked) // 2])
        res["profile"] = trials[0]["profile"]
        res["trials_messages_per_s"] = [t["messages_per_s"] for t in trials]
        res["connections"] = conc
        if res["accepted_messages"] == 0:
            raise RuntimeError(f"push_api {label}/{mode}: the server accepted nothing (errors {res['errors']})")
        if res["generator_bound"]:
            notes.add(f"{label}/{mode}: generator at {res['cpu_pct']['generator']}% CPU — generator-bound")
        if res["presigned_exhausted"]:
            notes.add(f"{label}/{mode}: the pre-signed requests ran out — the figure is a lower bound")
        if h.foreign_load(res["cpu_pct"]):
            notes.add(
                f"{label}/{mode}: other processes used {res['cpu_pct']['others']}% CPU meanwhile "
                "— figures disturbed; rerun on a quiet machine"
            )
        if res["errors"]:
            notes.add(f"{label}/{mode}: non-2xx answers {res['errors']}")
        out[mode] = res
        h.print_profile(f"{label}/{mode}", res["profile"] or {})
    return out


def run(args: argparse.Namespace, notes: h.Notes) -> dict[str, Any]:
    from bench.peers.signed_post_server import KEY_ID, SECRET

    out: dict[str, Any] = {
        "settings": {
            "duration_s": args.duration,
            "warmup_s": WARMUP,
            "trials": 1 if args.quick else TRIALS,
            "concurrency": args.concurrency,
            "batch_concurrency": args.batch_concurrency,
            "http_client": "raw pre-signed (bench/rawload.py)",
            "batch_size": BATCH,
            "channels": len(CHANNELS),
        },
        "targets": {"single_vs_limit": TARGET_SINGLE_RATIO, "batch_messages_per_s": TARGET_BATCH_MSGS},
        "runs": [],
    }
    # 1. the limit, alone on CPU 0
    print(f"\n[{NAME}] the limit: {REF_LABEL} …", flush=True)
    with servers.reference() as ref:
        ref_out: dict[str, Any] = {"server": "reference", "backend": "none", "label": REF_LABEL}
        ref_out |= phases(
            "reference",
            ref.port,
            ref.pid,
            (KEY_ID, SECRET),
            args,
            notes,
            profile_name="reference" if args.profile else None,
        )
        tail = ref.log_tail()
        if "Traceback" in tail or "ERROR" in tail:
            notes.add(f"reference: server logged errors, e.g. {tail.splitlines()[-1][:160]}")
    for mode in ("single", "batch"):
        ref_out[mode]["stack_cpu_us_per_push"] = None  # nothing behind the limit: its CPU is the server's
    out["runs"].append(ref_out)
    # 2. Pushwire on the full durable stack, default settings
    print(f"\n[{NAME}] Pushwire on the durable stack: setting up …", flush=True)
    with h.backend("durable") as b:
        app = h.create_bench_app(b)
        with h.Server(b) as server:
            pw_out: dict[str, Any] = {"server": "pushwire", "backend": b.name, "label": f"Pushwire ({b.label})"}
            pw_out |= phases(
                "pushwire",
                server.port,
                server.pid,
                (app.key_id, app.key_secret),
                args,
                notes,
                profile_name="durable" if args.profile else None,
            )
            errors = server.log_errors()
            if errors:
                pw_out["server_log_errors"] = errors
                notes.add(f"pushwire: server logged errors, e.g. {errors[0][:160]}")
    out["runs"].append(pw_out)
    # ratios and goals
    for mode in ("single", "batch"):
        pw, lim = pw_out[mode], ref_out[mode]
        pw["limit_messages_per_s"] = lim["messages_per_s"]
        pw["vs_limit"] = round(pw["messages_per_s"] / lim["messages_per_s"], 3) if lim["messages_per_s"] else None
    pw_out["single"]["target"] = f"≥ {TARGET_SINGLE_RATIO} × limit"
    pw_out["single"]["meets_target"] = bool(pw_out["single"]["vs_limit"] and pw_out["single"]["vs_limit"] >= 0.7)
    pw_out["batch"]["target"] = f"≥ {TARGET_BATCH_MSGS:,} messages/s"
    pw_out["batch"]["meets_target"] = pw_out["batch"]["messages_per_s"] >= TARGET_BATCH_MSGS
    pw_out["batch"]["vs_target"] = round(pw_out["batch"]["messages_per_s"] / TARGET_BATCH_MSGS, 3)
    rows = []
    for r in (pw_out, ref_out):
        for mode in ("single", "batch"):
            x = r[mode]
            cpu = x["cpu_pct"]
            rows.append(
                [
                    r["server"],
                    mode,
                    x["requests_per_s"],
                    x["messages_per_s"],
                    x.get("vs_limit"),
                    x.get("target", "–"),
                    x.get("meets_target"),
                    x["server_cpu_us_per_push"],
                    x["stack_cpu_us_per_push"],
                    x["p50_ms"],
                    x["p99_ms"],
                    cpu.get("server"),
                    round(sum(cpu.get(k, 0.0) for k in h.STACK[1:]), 1),
                    cpu.get("generator"),
                    x["generator_bound"],
                    sum(x["errors"].values()),
                ]
            )
    n = 1 if args.quick else TRIALS
    h.print_table(
        f"push_api — full stack; {args.duration:.0f} s windows, median of {n}; single: {args.concurrency} connections, "
        f"batch: {BATCH} per request, {args.batch_concurrency} connections; pre-signed raw keep-alive requests",
        [
            "server",
            "mode",
            "req/s",
            "msgs/s",
            "× limit",
            "goal",
            "met",
            "srv µs/push",
            "stack µs/push",
            "p50 ms",
            "p99 ms",
            "srv CPU%",
            "db+cache+kafka+etcd CPU%",
            "gen CPU%",
            "gen-bound",
            "non-2xx",
        ],
        rows,
    )
    return out
