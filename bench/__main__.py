"""`python -m bench [scenario …] [--quick]` — Pushwire beside its peer and the machine's limits; see bench/README.md.

Writes bench/results/<date>.json (every trial's raw figures, medians, CPU of server and generator,
generator-bound flags), <date>.md and latest.md (the table) and <date>-*.png (charts). A
scenario that fails (a server that does not start, clients that cannot connect, nothing
received) is reported and makes the exit status 1; the other scenarios still run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import sys
import time
import traceback

from bench import harness as h

SCENARIOS = ("limits", "push_api", "e2e", "recovery", "memory", "connects", "fanout")
SERVERS = ("pushwire", "pusher", "socketio", "websockets", "picows", "litestar-ws")
FANOUT_ONLY = ("pusher",)  # Pushwire over the Pusher protocol: a fan-out server only (issue 14)


def _csv(kind: type) -> object:
    return lambda text: [kind(x) for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("scenarios", nargs="*", metavar="scenario", help=f"any of {', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--quick", action="store_true", help="small counts and short steps, for development (~3 min)")
    p.add_argument(
        "--servers",
        type=_csv(str),
        default=list(SERVERS),
        help=f"fanout/memory servers (default: all: {', '.join(SERVERS)}; pusher = Pushwire over the "
        "Pusher protocol, fanout only)",
    )
    p.add_argument("--clients", type=_csv(int), default=None, help="fanout/memory client counts (default 1000,5000)")
    p.add_argument("--step-seconds", type=float, default=None, help="fanout: seconds per trial (default 1.5)")
    p.add_argument("--no-unicast", action="store_true", help="fanout: skip Pushwire's unicast ladder")
    p.add_argument(
        "--e2e-rates", type=_csv(int), default=[20, 200, 1000], help="e2e offered pushes/s (default 20,200,1000)"
    )
    p.add_argument("--e2e-seconds", type=float, default=None, help="e2e: seconds per run (default 5)")
    p.add_argument("--recovery-k", type=_csv(int), default=None, help="recovery: K missed (default 100,1000,10000)")
    p.add_argument("--herd", type=int, default=None, help="recovery: herd size (default 5000)")
    p.add_argument("--duration", type=float, default=None, help="push_api: seconds per phase (default 5)")
    p.add_argument("--wait-quiet", type=float, default=10.0, help="seconds to wait for a quiet machine per scenario")
    p.add_argument(
        "--profile",
        action="store_true",
        help="push_api, e2e, connects: sample the server with py-spy (.venv/bin/py-spy)",
    )
    p.add_argument("--tag", default="", help="results as <date>-<tag>.json/.md (latest.md only without a tag)")
    return p


def defaults(a: argparse.Namespace) -> argparse.Namespace:
    q = a.quick
    a.clients = a.clients or ([200, 500] if q else [1000, 5000])
    a.step_seconds = a.step_seconds or (1.0 if q else 1.5)
    a.e2e_seconds = a.e2e_seconds or (2.0 if q else 5.0)
    a.e2e_idle = 100 if q else 1000
    a.recovery_k = a.recovery_k or ([100, 1000] if q else [100, 1000, 10000])
    a.herd = a.herd or (200 if q else 5000)
    a.duration = a.duration or (3.0 if q else 5.0)
    a.redis_requests = 20_000 if q else 100_000
    # push_api's own options (bench/push_api.py): the durable backend only
    a.concurrency, a.batch_concurrency = 32, 8
    if a.tag == "" and q:
        a.tag = "quick"
    return a


def main(argv: list[str]) -> int:
    p = parser()
    args = defaults(p.parse_args(argv))
    scenarios = args.scenarios or list(SCENARIOS)
    bad = [s for s in scenarios if s not in SCENARIOS] + [s for s in args.servers if s not in SERVERS]
    if bad:
        p.error(f"unknown scenario or server: {', '.join(bad)}")
    limit = h.raise_nofile()
    if limit < 2 * max(args.clients) + 100:
        p.error(f"RLIMIT_NOFILE is {limit}: too low for {max(args.clients)} clients")
    if not h.pin_generator():
        print("! one CPU only: server and generator share it; every figure is generator-bound", flush=True)
    print(
        f"{dt.datetime.now(dt.UTC):%H:%M:%S} UTC · generator pid {os.getpid()} on CPU {h.GENERATOR_CPU}, servers on "
        f"CPU {h.SERVER_CPU}; scenarios {', '.join(scenarios)}",
        flush=True,
    )
    doc: dict[str, object] = {
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench", *argv]),
        "machine": h.machine(),
        "shared_machine": "other engineers ran tests on the same 2 cores during the run",
        "scenarios": {},
        "failed": {},
    }
    for name in scenarios:
        notes = h.Notes()
        busy = h.wait_for_quiet(args.wait_quiet)
        t0 = time.monotonic()
        try:
            scenario_args = argparse.Namespace(**vars(args))
            if name != "fanout":
                scenario_args.servers = [s for s in args.servers if s not in FANOUT_ONLY]
            data = importlib.import_module(f"bench.{name}").run(scenario_args, notes)
        except Exception as exc:
            traceback.print_exc()
            print(f"\n!! scenario {name} FAILED: {exc}", file=sys.stderr, flush=True)
            doc["failed"][name] = f"{type(exc).__name__}: {exc}"[:2000]  # type: ignore[index]
            continue
        data.update(elapsed_s=round(time.monotonic() - t0, 1), machine_busy_at_start_pct=busy, notes=notes.items)
        doc["scenarios"][name] = data  # type: ignore[index]
        print(f"  ({name} took {data['elapsed_s']:.0f} s)", flush=True)
    doc["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    from bench import charts, report

    doc["summary"] = report.summary(doc)
    stem = f"{dt.date.today().isoformat()}{'-' + args.tag if args.tag else ''}"
    h.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (h.RESULTS_DIR / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    pngs = charts.draw(doc, stem)
    md = report.markdown(doc, pngs)
    (h.RESULTS_DIR / f"{stem}.md").write_text(md)
    if not args.tag:
        (h.RESULTS_DIR / "latest.md").write_text(md.replace(f"({stem}-", f"({stem}-"))
    print("\n" + md)
    print(f"→ bench/results/{stem}.json, {stem}.md, {len(pngs)} charts", flush=True)
    if doc["failed"]:
        print(f"!! failed scenarios: {', '.join(doc['failed'])}", file=sys.stderr)  # type: ignore[arg-type]
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
