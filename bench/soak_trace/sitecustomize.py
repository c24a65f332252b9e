"""Loaded by the soak's server under `--tracemalloc` (PYTHONPATH=bench/soak_trace, PYTHONTRACEMALLOC=N).

SIGUSR2 makes the server collect garbage and dump a tracemalloc snapshot to
`$PUSHWIRE_SOAK_SNAPSHOT.<n>` (written under a temporary name, then renamed, so the soak never
reads half a file). `PUSHWIRE_SOAK_MAX_REMEMBERED` lowers the memory cache's cap on remembered
keys (cache/memory.py), so a short profile sees the cache at its cap and what else grows.
Never imported by Pushwire itself.
"""

from __future__ import annotations

import gc
import itertools
import os
import signal
import tracemalloc
from types import FrameType

_BASE = os.environ.get("PUSHWIRE_SOAK_SNAPSHOT", "")
_SEQ = itertools.count()


def _dump(_signum: int, _frame: FrameType | None) -> None:
    if not tracemalloc.is_tracing():
        return
    gc.collect()
    path = f"{_BASE}.{next(_SEQ)}"
    tracemalloc.take_snapshot().dump(path + ".tmp")
    os.rename(path + ".tmp", path)


if _BASE:
    signal.signal(signal.SIGUSR2, _dump)
if os.environ.get("PUSHWIRE_SOAK_MAX_REMEMBERED"):
    from pushwire.cache.memory import MemoryCache

    assert MemoryCache.__init__.__kwdefaults__ is not None
    MemoryCache.__init__.__kwdefaults__["max_remembered"] = int(os.environ["PUSHWIRE_SOAK_MAX_REMEMBERED"])
