"""limits: the cache's own ceiling — `redis-benchmark` against the Redis Pushwire uses (run on CPU 1, db 13).

SET/GET/LPUSH and LRANGE_100 with 100-byte values, 50 connections, no pipelining. The Redis
server is a shared service (not pinned); the figure is the limit the replay-from-Redis path sits on.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import subprocess
from typing import Any

from bench import harness as h

NAME = "limits"


def run(args: argparse.Namespace, notes: h.Notes) -> dict[str, Any]:
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise RuntimeError("redis-benchmark not found (Debian: apt-get install redis-tools)")
    host, port = "127.0.0.1", "6379"
    cmd = [
        "taskset",
        "-c",
        str(h.GENERATOR_CPU),
        exe,
        "-h",
        host,
        "-p",
        port,
        "--dbnum",
        "13",
        "-n",
        str(args.redis_requests),
        "-c",
        "50",
        "-d",
        "100",
        "-t",
        "set,get,lpush,lrange_100",
        "--csv",
        "-q",
    ]
    print(f"\n[{NAME}] {' '.join(cmd[3:])}", flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed ({out.returncode}): {out.stderr[-300:]}")
    rows = list(csv.reader(io.StringIO(out.stdout)))
    ops: dict[str, float] = {}
    for row in rows[1:] if rows and not row_is_number(rows[0]) else rows:
        if len(row) >= 2 and row_is_number(row):
            ops[row[0]] = float(row[1])
    if not ops:
        raise RuntimeError(f"redis-benchmark printed nothing usable: {out.stdout[:300]!r}")
    for k, v in ops.items():
        print(f"  {k:<30} {v:>12,.0f} requests/s", flush=True)
    return {"command": " ".join(cmd), "requests_per_s": ops}


def row_is_number(row: list[str]) -> bool:
    try:
        float(row[1])
        return True
    except (IndexError, ValueError):
        return False
