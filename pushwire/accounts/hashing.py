"""Password hashing off the event loop: a small thread pool with a bounded wait queue.

argon2 (64 MiB, t=3) takes ~150 ms of CPU and releases the GIL, so it runs in threads; on the
event loop it would stall every WebSocket, push and /health for that long per login. Two workers
bound the CPU and memory (64 MiB each) a login burst can take; at most QUEUE more calls wait, and
beyond that a call fails at once with Busy (the login page answers 503 with Retry-After) instead
of queueing without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from pwdlib import PasswordHash

WORKERS = 2
QUEUE = 16
# Worker threads (and the lane threads argon2 starts from them) run at this nice value, so on a
# busy host the event loop, not a login, gets the CPU first.
NICE = 10

T = TypeVar("T")


def _lower_priority() -> None:
    # Linux only: there a thread id names one thread; elsewhere it would renice the whole process.
    if sys.platform == "linux":
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)


class Busy(Exception):
    """Every hashing worker is busy and the wait queue is full: try again shortly."""


class PasswordWorker:
    def __init__(self, hasher: PasswordHash, workers: int = WORKERS, queue: int = QUEUE) -> None:
        if workers < 1 or queue < 0:
            raise ValueError("workers must be >= 1 and queue >= 0")
        self.hasher = hasher
        self.limit = workers + queue
        self._pool = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="pushwire-argon2", initializer=_lower_priority
        )
        self._lock = threading.Lock()
        self._pending = 0
        # A hash of a random password, made on first need: unknown emails verify against it.
        self._dummy: str | None = None

    @property
    def pending(self) -> int:
        """Calls running or waiting now."""
        return self._pending

    async def run(self, fn: Callable[..., T], *args: object, bounded: bool = True) -> T:
        """fn(*args) in a worker thread. Bounded calls raise Busy when the queue is full."""
        with self._lock:
            if bounded and self._pending >= self.limit:
                raise Busy()
            self._pending += 1
        try:
            future: Future[T] = self._pool.submit(fn, *args)
        except BaseException:
            self._release(None)
            raise
        # Released when the work ends (or is cancelled before it starts), not when the caller
        # stops waiting: a cancelled login's hash still occupies its thread until it finishes.
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _release(self, _: object) -> None:
        with self._lock:
            self._pending -= 1

    async def hash(self, password: str, *, bounded: bool = True) -> str:
        return await self.run(self.hasher.hash, password, bounded=bounded)

    async def verify(self, password: str, password_hash: str) -> bool:
        return await self.run(self.hasher.verify, password, password_hash)

    async def dummy_verify(self, password: str) -> None:
        """The cost of a verify for a login that cannot succeed (no such user, or disabled)."""
        await self.run(self._dummy_verify, password)

    def _dummy_verify(self, password: str) -> None:
        if self._dummy is None:
            self._dummy = self.hasher.hash(secrets.token_urlsafe(24))
        self.hasher.verify(password, self._dummy)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
