"""Shared parts of the benchmarks: CPU pinning, /proc figures, statistics, tables, notes.

- CPU pinning: servers run under `taskset -c 0`; the generator (this process) pins itself to CPU 1.
- `CpuMeter` / `rss_kib()`: process CPU% from /proc/<pid>/stat (utime + stime) and RSS from
  /proc/<pid>/status; `others` = what the rest of the machine used meanwhile.
- `generator_bound()`: the generator above 80 % of its core — the figure measures the generator.
- Re-exported for the scenarios: backends and the server (bench/backends.py), the push API client
  (bench/pushclient.py), py-spy (bench/profiling.py).
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import socket
import sys
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's bin: `pushwire` and `py-spy` live beside python
RESULTS_DIR = ROOT / "bench" / "results"
SERVER_CPU = 0
GENERATOR_CPU = 1
GENERATOR_BOUND_PCT = 80.0
MYSQL_SERVER_URL = os.environ.get("PUSHWIRE_BENCH_MYSQL_URL", "mysql+asyncmy://root:@127.0.0.1:3306")
REDIS_URL = os.environ.get("PUSHWIRE_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
KAFKA_URL = os.environ.get("PUSHWIRE_BENCH_KAFKA_URL", "kafka://127.0.0.1:9092")
ETCD_URL = os.environ.get("PUSHWIRE_BENCH_ETCD_URL", "etcd://127.0.0.1:2379")
NOFILE = 65_536
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- process set-up ---------------------------------------------------------------------------
def raise_nofile(wanted: int = NOFILE) -> int:
    """Raise RLIMIT_NOFILE as far as allowed (root may raise the hard limit too); returns the soft limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (max(wanted, hard), hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            break
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pin_generator() -> bool:
    """Pin this process (the load generator) to CPU 1; False when the machine has one CPU."""
    if (os.cpu_count() or 1) < 2:
        return False
    os.sched_setaffinity(0, {GENERATOR_CPU})
    return True


def run_async(coro: Awaitable[T]) -> T:
    """Run a generator phase on uvloop (the field notes: the generator must not be the bottleneck)."""
    import uvloop

    return uvloop.run(coro)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- /proc figures -----------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# process name (/proc/<pid>/comm, ≤ 15 characters) prefix → the name its CPU is reported under
SERVICES = {"mariadbd": "mariadb", "mysqld": "mariadb", "redis-server": "redis", "tansu": "tansu", "etcd": "etcd"}
STACK = ("server", "mariadb", "redis", "tansu", "etcd")  # the full stack's processes (CPU per push)


def service_pids() -> dict[str, int]:
    """PIDs of the database, cache, Kafka (Tansu) and etcd servers on this machine (their CPU is
    the server's work, not noise)."""
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            comm = (entry / "comm").read_text().strip()
            for prefix, name in SERVICES.items():
                if comm == prefix or (comm.startswith(prefix) and prefix in ("tansu", "etcd")):
                    found.setdefault(name, int(entry.name))
    return found


def machine_busy_seconds() -> float:
    """CPU seconds all CPUs spent busy (not idle, not iowait) since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / CLK_TCK


class CpuMeter:
    """CPU% of several processes over one window: `start()`, then `stop()` → {name: percent of one core}.

    Also `others`: what the rest of the machine used meanwhile (percent of one core). Another
    benchmark or test run on the same machine shows up there and makes the figures unreliable.
    """

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, **service_pids()}
        self._t0 = 0.0
        self._c0: dict[str, float] = {}
        self._m0 = 0.0

    def start(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._c0 = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._m0 = machine_busy_seconds()
        return self

    def stop(self) -> dict[str, float]:
        wall = max(time.monotonic() - self._t0, 1e-9)
        used = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                used[name] = cpu_seconds(pid) - self._c0[name]
        others = max(0.0, machine_busy_seconds() - self._m0 - sum(used.values()))
        out = {name: round(100.0 * v / wall, 1) for name, v in used.items()}
        out["others"] = round(100.0 * others / wall, 1)
        return out


OTHERS_BUSY_PCT = 15.0


def wait_for_quiet(max_wait: float) -> float:
    """Wait (at most `max_wait` s) until the machine is nearly idle; returns the busy % last seen.

    Benchmarks share the machine with whatever else runs (tests, other benchmarks); their CPU
    lands on the pinned cores too and makes the figures meaningless.
    """
    deadline = time.monotonic() + max_wait
    said = False
    while True:
        t0, m0 = time.monotonic(), machine_busy_seconds()
        time.sleep(1.0)
        busy = 100.0 * (machine_busy_seconds() - m0) / (time.monotonic() - t0)
        if busy <= OTHERS_BUSY_PCT or time.monotonic() >= deadline:
            if said or busy > OTHERS_BUSY_PCT:
                print(
                    f"  machine busy {busy:.0f}% of one core {'(going ahead)' if busy > OTHERS_BUSY_PCT else ''}",
                    flush=True,
                )
            return round(busy, 1)
        if not said:
            print(
                f"  other processes keep the machine busy ({busy:.0f}% of one core); waiting up to "
                f"{max_wait:.0f} s for quiet …",
                flush=True,
            )
            said = True


def foreign_load(cpu: dict[str, float]) -> bool:
    """True when processes other than the server and the generator used a noticeable share of the CPUs."""
    return cpu.get("others", 0.0) > OTHERS_BUSY_PCT


def generator_bound(cpu: dict[str, float]) -> bool:
    return cpu.get("generator", 0.0) > GENERATOR_BOUND_PCT


# -- statistics and output ---------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile of unsorted values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100.0 * len(ordered) + 0.5) - 1))
    return ordered[k]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 2)


def _cell(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.2f}"
    return str(v)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    print(f"\n{title}")
    print(
        "  " + "  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True)))
    )
    print("  " + "  ".join("─" * w for w in widths))
    for r in cells:
        print(
            "  " + "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False)))
        )


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "server_cpu": SERVER_CPU,
        "generator_cpu": GENERATOR_CPU,
    }


@dataclass
class Notes:
    """Flags collected while running (generator-bound phases, errors), printed and saved at the end."""

    items: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.items.append(text)
        print(f"  ! {text}")


# Re-exports (imported last: those modules import the constants above).
from bench.backends import Backend, BenchApp, Server, _flush_redis, backend, create_bench_app  # noqa: E402
from bench.profiling import Profiler, print_profile, profile_path  # noqa: E402
from bench.pushclient import HttpxPoster, RawHttp, Signer, posters  # noqa: E402

__all__ = [
    "Backend",
    "BenchApp",
    "HttpxPoster",
    "Profiler",
    "RawHttp",
    "Server",
    "Signer",
    "_flush_redis",
    "backend",
    "create_bench_app",
    "posters",
    "print_profile",
    "profile_path",
]
