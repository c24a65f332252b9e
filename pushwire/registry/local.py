"""Single-node registry: an in-memory KV store with leases, watches and locks.

It mirrors etcd's model (keys attached to leases vanish when the lease is not kept alive)
so the single-node deployment behaves like the clustered one. `LocalRegistry` objects with
the same prefix in one process share one engine, like several clients of one etcd node.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import uuid
import weakref
from dataclasses import dataclass, field

import msgspec

from pushwire.errors import BackendUnavailable
from pushwire.registry.base import InstanceInfo, WatchEvent, WatchHandler
from pushwire.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_INSTANCES = "instances/"
_LOCKS = "locks/"


@dataclass
class _Lease:
    ttl: float
    deadline: float  # time.monotonic() value
    keys: set[str] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None


class _Engine:
    """The shared store. All keys are relative to the registry prefix."""

    def __init__(self) -> None:
        self._kv: dict[str, tuple[bytes, int]] = {}  # key -> (value, lease id or 0)
        self._leases: dict[int, _Lease] = {}
        self._ids = itertools.count(1)
        self._watches: set[_LocalWatch] = set()
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    # -- leases ---------------------------------------------------------------

    def grant(self, ttl: float) -> int:
        lease_id = next(self._ids)
        lease = _Lease(ttl=ttl, deadline=time.monotonic() + ttl)
        self._leases[lease_id] = lease
        self._schedule(lease)
        return lease_id

    def keep_alive(self, lease_id: int) -> bool:
        self.reap()
        lease = self._leases.get(lease_id)
        if lease is None:
            return False
        lease.deadline = time.monotonic() + lease.ttl
        self._schedule(lease)
        return True

    def revoke(self, lease_id: int) -> None:
        lease = self._leases.pop(lease_id, None)
        if lease is None:
            return
        if lease.timer is not None:
            lease.timer.cancel()
        for key in sorted(lease.keys):
            entry = self._kv.get(key)
            if entry is not None and entry[1] == lease_id:
                self.delete(key)

    def lease_deadline(self, lease_id: int) -> float | None:
        lease = self._leases.get(lease_id)
        return None if lease is None else lease.deadline

    def reap(self) -> None:
        """Expire overdue leases; called by timers and lazily before every operation."""
        now = time.monotonic()
        for lease_id in [i for i, lease in self._leases.items() if lease.deadline <= now]:
            self.revoke(lease_id)

    def _schedule(self, lease: _Lease) -> None:
        # Timers only make expiry prompt (delete events reach watchers on time);
        # correctness comes from reap() running before every read and write.
        if lease.timer is not None:
            lease.timer.cancel()
            lease.timer = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        lease.timer = loop.call_later(max(lease.deadline - time.monotonic(), 0) + 0.01, self.reap)

    # -- key-value ------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        self.reap()
        entry = self._kv.get(key)
        return None if entry is None else entry[0]

    def entry(self, key: str) -> tuple[bytes, int] | None:
        self.reap()
        return self._kv.get(key)

    def range(self, prefix: str) -> dict[str, bytes]:
        self.reap()
        return {k: v for k, (v, _) in sorted(self._kv.items()) if k.startswith(prefix)}

    def put(self, key: str, value: bytes, lease_id: int = 0) -> None:
        self.reap()
        if lease_id and lease_id not in self._leases:
            raise KeyError("lease not found")
        old = self._kv.get(key)
        if old is not None and old[1] and old[1] in self._leases:
            self._leases[old[1]].keys.discard(key)
        self._kv[key] = (value, lease_id)
        if lease_id:
            self._leases[lease_id].keys.add(key)
        self._emit(WatchEvent(kind="put", key=key, value=value))

    def create(self, key: str, value: bytes, lease_id: int) -> bool:
        """Put only when the key is absent (etcd's version == 0 transaction)."""
        self.reap()
        if key in self._kv:
            return False
        self.put(key, value, lease_id)
        return True

    def delete(self, key: str) -> None:
        entry = self._kv.pop(key, None)
        if entry is None:
            return
        lease = self._leases.get(entry[1])
        if lease is not None:
            lease.keys.discard(key)
        self._emit(WatchEvent(kind="delete", key=key))
        for waiter in self._waiters.pop(key, []):
            if not waiter.done():
                waiter.set_result(None)

    def wait_deleted(self, key: str) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Drop waiters that timed out earlier so a long-held key does not collect them.
        pending = [w for w in self._waiters.get(key, []) if not w.done()]
        self._waiters[key] = [*pending, waiter]
        return waiter

    # -- watches --------------------------------------------------------------

    def add_watch(self, watch: _LocalWatch) -> None:
        self._watches.add(watch)

    def remove_watch(self, watch: _LocalWatch) -> None:
        self._watches.discard(watch)

    def _emit(self, event: WatchEvent) -> None:
        for watch in list(self._watches):
            if event.key.startswith(watch.prefix):
                watch.queue.put_nowait(event)


# One engine per prefix, alive while some registry uses it.
_ENGINES: weakref.WeakValueDictionary[str, _Engine] = weakref.WeakValueDictionary()


def _engine_for(prefix: str) -> _Engine:
    engine = _ENGINES.get(prefix)
    if engine is None:
        engine = _Engine()
        _ENGINES[prefix] = engine
    return engine


class _LocalWatch:
    def __init__(self, engine: _Engine, prefix: str, handler: WatchHandler) -> None:
        self.prefix = prefix
        self.queue: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self._engine = engine
        self._handler = handler
        # Handlers run from one task, so they see events one at a time and in order.
        self._task = asyncio.create_task(self._run(), name=f"registry-watch:{prefix}")
        engine.add_watch(self)

    async def _run(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self._handler(event)
            except Exception:
                log.exception("registry watch handler failed for %s", event.key)

    def abort(self) -> None:
        self._engine.remove_watch(self)
        self._task.cancel()

    async def cancel(self) -> None:
        self.abort()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class _LocalLock:
    def __init__(self, engine: _Engine, name: str, ttl: int) -> None:
        self._engine = engine
        self._key = _LOCKS + name
        self._ttl = ttl
        self._token = uuid.uuid4().hex.encode()
        self._lease = 0

    @property
    def is_held(self) -> bool:
        entry = self._engine.entry(self._key)
        return entry is not None and entry == (self._token, self._lease) and self._lease != 0

    async def acquire(self, timeout: float | None = None) -> bool:
        if self.is_held:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            lease = self._engine.grant(self._ttl)
            if self._engine.create(self._key, self._token, lease):
                self._lease = lease
                return True
            self._engine.revoke(lease)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            # Wake on release, or when the holder's lease runs out even if no timer fires.
            holder = self._engine.entry(self._key)
            expiry = self._engine.lease_deadline(holder[1]) if holder else None
            until_expiry = None if expiry is None else expiry - time.monotonic() + 0.01
            waits = [w for w in (remaining, until_expiry) if w is not None]
            waiter = self._engine.wait_deleted(self._key)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, max(min(waits), 0.0) if waits else None)

    async def release(self) -> None:
        # Our key is attached to our lease, so revoking deletes it (and only if still ours).
        if self._lease:
            self._engine.revoke(self._lease)
            self._lease = 0

    async def refresh(self) -> bool:
        if self.is_held and self._engine.keep_alive(self._lease):
            return True
        if self._lease:
            self._engine.revoke(self._lease)  # the key is gone or someone else's: drop our lease
            self._lease = 0
        return False


class LocalRegistry:
    def __init__(self, prefix: str = "/pushwire/") -> None:
        self._prefix = prefix
        self._engine = _engine_for(prefix)
        self._closed = False
        self._info: InstanceInfo | None = None
        self._ttl = 0
        self._lease = 0
        self._keepalive: asyncio.Task[None] | None = None
        self._watches: set[_LocalWatch] = set()
        # Weak: callers may create a lock object per job run; we only need the live ones.
        self._locks: weakref.WeakSet[_LocalLock] = weakref.WeakSet()

    async def start(self) -> None:
        self._closed = False

    async def ping(self) -> None:
        if self._closed:
            raise BackendUnavailable("registry", "local registry is closed")

    async def close(self) -> None:
        if self._closed:
            return
        await self.deregister()
        for watch in list(self._watches):
            await watch.cancel()
        self._watches.clear()
        for lock in list(self._locks):
            await lock.release()
        self._locks.clear()
        self._closed = True

    async def _crash_for_tests(self) -> None:
        """Simulate a dead process: stop keep-alives and watches but revoke nothing."""
        if self._keepalive is not None:
            self._keepalive.cancel()
        for watch in self._watches:
            watch.abort()
        self._keepalive, self._watches, self._locks = None, set(), weakref.WeakSet()
        self._info, self._lease, self._closed = None, 0, True

    # -- instances ------------------------------------------------------------

    async def register(self, info: InstanceInfo, ttl: int) -> None:
        await self.deregister()
        self._info, self._ttl = info, ttl
        self._publish()
        self._keepalive = asyncio.create_task(self._keep_alive(), name=f"registry-keepalive:{info.id}")

    def _publish(self) -> None:
        assert self._info is not None
        if not self._engine.keep_alive(self._lease):
            self._lease = self._engine.grant(self._ttl)
        self._engine.put(_INSTANCES + self._info.id, msgspec.json.encode(self._info), self._lease)

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            if not self._engine.keep_alive(self._lease):
                # The loop stalled past the ttl: come back rather than stay invisible.
                log.warning("registry lease for %s expired; re-registering", self._info and self._info.id)
                self._publish()

    async def update(self, info: InstanceInfo) -> None:
        if self._info is None:
            raise RuntimeError("update() before register()")
        if info.id != self._info.id:
            raise ValueError("update() cannot change the instance id")
        self._info = info
        self._publish()

    async def deregister(self) -> None:
        await cancel_and_wait(self._keepalive)
        self._keepalive = None
        if self._lease:
            self._engine.revoke(self._lease)
        self._info, self._lease = None, 0

    async def instances(self) -> list[InstanceInfo]:
        found = []
        for key, value in self._engine.range(_INSTANCES).items():
            try:
                found.append(msgspec.json.decode(value, type=InstanceInfo))
            except msgspec.DecodeError:
                log.warning("ignoring malformed instance entry %s", key)
        return found

    # -- key-value ------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return self._engine.get(key)

    async def put(self, key: str, value: bytes) -> None:
        self._engine.put(key, value)

    async def delete(self, key: str) -> None:
        self._engine.reap()
        self._engine.delete(key)

    async def get_prefix(self, prefix: str) -> dict[str, bytes]:
        return self._engine.range(prefix)

    async def watch_prefix(self, prefix: str, handler: WatchHandler) -> _LocalWatch:
        watch = _LocalWatch(self._engine, prefix, handler)
        self._watches.add(watch)
        return watch

    def lock(self, name: str, ttl: int) -> _LocalLock:
        lock = _LocalLock(self._engine, name, ttl)
        self._locks.add(lock)
        return lock
