"""`python -m bench [push_api] [fanout] [memory] [options]` — see bench/README.md."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time

from bench import harness as h

SCENARIOS = ("push_api", "fanout", "memory")


def _csv(kind: type) -> object:
    def parse(text: str) -> list[object]:
        return [kind(x) for x in text.split(",") if x.strip()]

    return parse


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description="Pushwire benchmarks (figures, never assertions).")
    p.add_argument("scenarios", nargs="*", metavar="scenario",
                   help=f"one or more of {', '.join(SCENARIOS)} (default: all)")
    p.add_argument("--backends", type=_csv(str), default=None,
                   help="comma list of sqlite, mariadb (default: push_api both; fanout and memory sqlite)")
    p.add_argument("--duration", type=float, default=10.0, help="push_api: seconds per phase (default 10)")
    p.add_argument("--concurrency", type=int, default=32, help="push_api: single-push connections (default 32)")
    p.add_argument("--batch-concurrency", type=int, default=32, help="push_api: batch connections (default 32)")
    p.add_argument("--client", choices=("raw", "httpx"), default="raw",
                   help="push_api HTTP client: raw keep-alive HTTP/1.1 (default) or httpx.AsyncClient")
    p.add_argument("--clients", type=_csv(int), default=[1000, 5000],
                   help="fanout/memory: WebSocket client counts (default 1000,5000)")
    p.add_argument("--ws-client", choices=("websockets", "raw"), default="websockets",
                   help="fanout/memory WebSocket client: the websockets library (default) or a raw frame counter")
    p.add_argument("--step-seconds", type=float, default=3.0, help="fanout: seconds per publish-rate step (default 3)")
    p.add_argument("--rates", type=_csv(int), default=None,
                   help="fanout: offered deliveries/s per step (default 10k,20k,40k,60k,80k,100k,120k,160k,200k)")
    p.add_argument("--wait-quiet", type=float, default=120.0,
                   help="seconds to wait for other processes to go quiet before each scenario (default 120)")
    p.add_argument("--tag", default="", help="suffix for the results file: <date>-<scenario>-<tag>.json")
    p.add_argument("--profile", action="store_true",
                   help="sample the server with py-spy during measured phases (pip install py-spy)")
    return p


def main(argv: list[str]) -> int:
    p = parser()
    args = p.parse_args(argv)
    scenarios = args.scenarios or list(SCENARIOS)
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario {', '.join(unknown)} (choose from {', '.join(SCENARIOS)})")
    limit = h.raise_nofile()
    pinned = h.pin_generator()
    print(f"generator pid {os.getpid()} on CPU {h.GENERATOR_CPU if pinned else 'any'}, "
          f"server on CPU {h.SERVER_CPU}; RLIMIT_NOFILE {limit}")
    for name in scenarios:
        module = importlib.import_module(f"bench.{name}")
        notes = h.Notes()
        busy = h.wait_for_quiet(args.wait_quiet)
        if busy > h.OTHERS_BUSY_PCT:
            notes.add(f"machine already {busy}% busy with other processes at the start")
        t0 = time.monotonic()
        data = module.run(args, notes)
        data["elapsed_s"] = round(time.monotonic() - t0, 1)
        data["notes"] = notes.items
        if notes.items:
            print("\n  notes:")
            for n in notes.items:
                print(f"  - {n}")
        print(f"  ({name} took {data['elapsed_s']:.0f} s)")
        h.write_results(name, data, argv, args.tag)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
