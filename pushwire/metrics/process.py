"""The process's own figures for /metrics: resident memory, open file descriptors, asyncio tasks,
and the connections the database and cache pools hold.

An instance runs for weeks while users come and go; these are the figures that show a leak (a
slope under steady traffic) before it bites. Read from /proc on Linux at scrape time (a few
microseconds); where /proc is missing the memory and fd gauges are simply absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable
from typing import Any

from pushwire.metrics.registry import Labels, Metrics

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """Resident set size of this process (the second field of /proc/self/statm is pages)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def asyncio_tasks() -> int | None:
    """Tasks not yet done on the running loop (None when called outside one)."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:
        return None


def sqlalchemy_pool(pool: Any) -> dict[str, int]:
    """Connections a SQLAlchemy pool holds, lent out and idle (queue pools; others: what they tell)."""
    counts: dict[str, int] = {}
    for state, method in (("in_use", "checkedout"), ("idle", "checkedin")):
        with contextlib.suppress(Exception):  # a pool class without the method: that state is absent
            counts[state] = int(getattr(pool, method)())
    return counts


def redis_pool(pool: Any) -> dict[str, int]:
    """Connections a redis-py asyncio pool holds (its lists are not public API: read defensively)."""
    counts: dict[str, int] = {}
    in_use, idle = getattr(pool, "_in_use_connections", None), getattr(pool, "_available_connections", None)
    if in_use is not None:
        counts["in_use"] = len(in_use)
    if idle is not None:
        counts["idle"] = len(idle)
    return counts


def _one(value: int | None) -> Iterable[tuple[Labels, float]]:
    return [] if value is None else [((), float(value))]


def install(metrics: Metrics) -> None:
    """The process gauges (Prometheus' conventional names for memory and fds)."""
    metrics.gauge(
        "process_resident_memory_bytes", "Resident memory of this process.", [], lambda: _one(resident_bytes())
    )
    metrics.gauge("process_open_fds", "Open file descriptors of this process.", [], lambda: _one(open_fds()))
    metrics.gauge(
        "pushwire_asyncio_tasks", "asyncio tasks not done on the event loop.", [], lambda: _one(asyncio_tasks())
    )
