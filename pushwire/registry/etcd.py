"""Clustered registry on etcd v3 (via aetcd): leased instance keys, KV with watches, locks.

Layout under the prefix: `instances/{id}` (msgspec-JSON InstanceInfo, attached to this
process's lease), `locks/{name}` (a holder token attached to the lock's own lease), and
user keys, which callers pass relative to the prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
import weakref
from collections.abc import Awaitable
from typing import Any, TypeVar

import aetcd
import msgspec

from pushwire.errors import BackendUnavailable
from pushwire.registry.base import InstanceInfo, WatchEvent, WatchHandler
from pushwire.tasks import cancel_and_wait

log = logging.getLogger(__name__)

T = TypeVar("T")

_CONNECT_TIMEOUT = 3.0
# Every unary RPC gets a deadline so a stalled etcd can never hang a caller.
_RPC_TIMEOUT = 5.0
# A lock waiter re-checks at least this often, in case a delete event was missed.
_LOCK_POLL = 2.0
_WATCH_RETRY = 1.0
_INSTANCES = "instances/"
_LOCKS = "locks/"


def _lease_missing(error: Exception) -> bool:
    return "lease not found" in str(error)


class _EtcdWatch:
    """Feeds one etcd prefix watch to a handler from a task; re-opens the watch if the stream drops."""

    def __init__(self, registry: EtcdRegistry, key: bytes, handler: WatchHandler) -> None:
        self._registry = registry
        self._key = key
        self._handler = handler
        self._watch: aetcd.Watch | None = None
        self._task: asyncio.Task[None] | None = None
        self._next_revision = 0

    async def open(self, start_revision: int) -> None:
        self._next_revision = start_revision
        self._watch = await self._registry._call(
            "watch", self._registry.client.watch_prefix(self._key, start_revision=start_revision)
        )
        self._task = asyncio.create_task(self._run(), name=f"registry-watch:{self._key!r}")

    async def _run(self) -> None:
        while True:
            try:
                assert self._watch is not None
                async for event in self._watch:
                    self._next_revision = event.kv.mod_revision + 1
                    await self._dispatch(event)
                return  # the iterator ends only on cancel() or client shutdown
            except Exception as error:  # noqa: BLE001 - etcd errors are many types; each is logged and retried
                log.warning("registry watch on %r broke (%s); re-opening", self._key, error)
            self._watch = await self._reopen()

    async def _reopen(self) -> aetcd.Watch:
        while True:
            await asyncio.sleep(_WATCH_RETRY)
            try:
                client = self._registry.client
                return await client.watch_prefix(self._key, start_revision=self._next_revision)
            except aetcd.RevisionCompactedError as error:
                log.error("registry watch on %r lost events up to revision %d", self._key, error.compacted_revision)
                self._next_revision = error.compacted_revision
            except Exception as error:  # noqa: BLE001 - etcd errors are many types; each is logged and retried
                log.warning("registry watch on %r cannot re-open yet: %s", self._key, error)

    async def _dispatch(self, event: aetcd.Event) -> None:
        key = self._registry._relative(event.kv.key)
        if event.kind == aetcd.EventKind.PUT:
            watch_event = WatchEvent(kind="put", key=key, value=event.kv.value)
        else:
            watch_event = WatchEvent(kind="delete", key=key)
        try:
            await self._handler(watch_event)
        except Exception:
            log.exception("registry watch handler failed for %s", key)

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def cancel(self) -> None:
        self._registry._watches.discard(self)
        if self._watch is not None:
            # aetcd's cancel touches the client's watcher, which is gone once the client closed.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._watch.cancel(), _RPC_TIMEOUT)
        self.abort()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class _EtcdLock:
    """Create-if-absent (version == 0) on `locks/{name}` under a per-acquisition lease.

    Not aetcd's Lock: it grants a lease per attempt and leaks it on failure, its refresh
    does not check that the key is still ours, and its release leaves the lease alive.
    """

    def __init__(self, registry: EtcdRegistry, name: str, ttl: int) -> None:
        self._registry = registry
        self._key = registry._full(_LOCKS + name)
        self._ttl = ttl
        self._token = uuid.uuid4().hex.encode()
        self._lease: aetcd.Lease | None = None
        # Local, conservative bound on the lease: measured from before the grant/refresh RPC.
        self._expires_at = 0.0

    @property
    def is_held(self) -> bool:
        return self._lease is not None and time.monotonic() < self._expires_at

    async def acquire(self, timeout: float | None = None) -> bool:
        if self.is_held:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            holder_revision = await self._try_acquire()
            if holder_revision is None:
                return True
            wait = _LOCK_POLL if deadline is None else min(deadline - time.monotonic(), _LOCK_POLL)
            if wait <= 0:
                return False
            if holder_revision:
                await self._wait_for_delete(holder_revision, wait)

    async def _try_acquire(self) -> int | None:
        """None when acquired, else the holder key's mod revision (0: unknown, retry)."""
        registry, client = self._registry, self._registry.client
        held = await registry._call("lock get", client.get(self._key))
        if held is not None:
            return int(held.mod_revision)
        started = time.monotonic()
        lease = await registry._call("lock lease", client.lease(self._ttl))
        acquired = False
        try:
            acquired, responses = await registry._call(
                "lock txn",
                client.transaction(
                    compare=[client.transactions.version(self._key) == 0],
                    success=[client.transactions.put(self._key, self._token, lease=lease)],
                    failure=[client.transactions.get(self._key)],
                ),
            )
        finally:
            if not acquired:
                with contextlib.suppress(Exception):
                    await registry._call("lock revoke", lease.revoke())
        if acquired:
            self._lease, self._expires_at = lease, started + self._ttl
            return None
        kvs = responses[0] if responses else []
        return int(kvs[0][1].mod_revision) if kvs else 0

    async def _wait_for_delete(self, revision: int, wait: float) -> None:
        client = self._registry.client
        try:
            await asyncio.wait_for(
                client.watch_once(self._key, timeout=wait, start_revision=revision + 1, kind=aetcd.EventKind.DELETE),
                wait + 0.5,
            )
        except (aetcd.WatchTimeoutError, TimeoutError):
            pass
        except aetcd.ClientError as error:
            # e.g. compacted revision or a dropped stream: fall back to polling.
            log.debug("lock watch on %r failed: %s", self._key, error)
            await asyncio.sleep(min(wait, 0.5))

    async def release(self) -> None:
        lease, self._lease, self._expires_at = self._lease, None, 0.0
        if lease is None:
            return
        # The key is attached to our lease, so revoking deletes it atomically (if still ours).
        try:
            await self._registry._call("lock revoke", lease.revoke())
        except Exception as error:  # noqa: BLE001 - etcd errors are many types; each is logged and retried
            if not _lease_missing(error):  # a missing lease already expired: nothing to free
                log.warning("could not revoke lock lease for %r (it expires on its own): %s", self._key, error)

    async def refresh(self) -> bool:
        if self._lease is None:
            return False
        registry, client = self._registry, self._registry.client
        started = time.monotonic()
        try:
            reply = await registry._call("lock refresh", self._lease.refresh())
            if reply is None or reply.TTL <= 0:
                return await self._lost()
            held = await registry._call("lock get", client.get(self._key))
            if held is None or held.value != self._token:
                return await self._lost()
        except BackendUnavailable as error:
            # Cannot tell: the lease is surely alive until our local bound, lost after it.
            log.warning("lock refresh for %r failed: %s", self._key, error)
            return self.is_held
        self._expires_at = started + reply.TTL
        return True

    async def _lost(self) -> bool:
        await self.release()
        return False


class EtcdRegistry:
    def __init__(self, host: str, port: int, prefix: str = "/pushwire/") -> None:
        self._host = host
        self._port = port
        self._prefix = prefix
        self._client: aetcd.Client | None = None
        self._info: InstanceInfo | None = None
        self._ttl = 0
        self._lease: aetcd.Lease | None = None
        self._lease_lock = asyncio.Lock()  # serialises register/update/keep-alive re-grants
        self._keepalive: asyncio.Task[None] | None = None
        self._watches: set[_EtcdWatch] = set()
        # Weak: callers may create a lock object per job run; we only need the live ones.
        self._locks: weakref.WeakSet[_EtcdLock] = weakref.WeakSet()

    # -- plumbing -------------------------------------------------------------

    @property
    def client(self) -> aetcd.Client:
        if self._client is None:
            raise BackendUnavailable("registry", "etcd registry is not started")
        return self._client

    def _full(self, key: str) -> bytes:
        return (self._prefix + key).encode()

    def _relative(self, key: bytes) -> str:
        return key.decode()[len(self._prefix) :]

    async def _call(self, what: str, operation: Awaitable[T]) -> T:
        """Await one etcd operation, turning connection trouble into BackendUnavailable."""
        try:
            return await asyncio.wait_for(operation, _RPC_TIMEOUT)
        except (aetcd.ConnectionFailedError, aetcd.ConnectionTimeoutError, TimeoutError) as error:
            raise BackendUnavailable("registry", f"etcd {what} failed: {error or 'timed out'}") from error

    async def start(self) -> None:
        if self._client is not None:
            return
        client = aetcd.Client(self._host, self._port, timeout=int(_RPC_TIMEOUT))
        try:
            await asyncio.wait_for(client.status(), _CONNECT_TIMEOUT)
        except Exception as error:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 1.0)
            detail = f"etcd at {self._host}:{self._port} did not answer: {error or 'timed out'}"
            raise BackendUnavailable("registry", detail) from error
        self._client = client

    async def ping(self) -> None:
        try:
            await asyncio.wait_for(self.client.status(), _CONNECT_TIMEOUT)
        except BackendUnavailable:
            raise
        except Exception as error:
            raise BackendUnavailable("registry", f"etcd ping failed: {error or 'timed out'}") from error

    async def close(self) -> None:
        if self._client is None:
            return
        await self.deregister()
        for watch in list(self._watches):
            await watch.cancel()
        for lock in list(self._locks):
            await lock.release()
        client, self._client = self._client, None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), _CONNECT_TIMEOUT)

    async def _crash_for_tests(self) -> None:
        """Simulate a dead process: stop keep-alives and watches, drop the connection, revoke nothing."""
        if self._keepalive is not None:
            self._keepalive.cancel()
        for watch in self._watches:
            watch.abort()
        client = self._client
        self._client, self._keepalive, self._watches = None, None, set()
        self._lease, self._info, self._locks = None, None, weakref.WeakSet()
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), _CONNECT_TIMEOUT)

    # -- instances ------------------------------------------------------------

    async def register(self, info: InstanceInfo, ttl: int) -> None:
        await self.deregister()
        async with self._lease_lock:
            self._info, self._ttl = info, ttl
            self._lease = await self._call("lease grant", self.client.lease(ttl))
            await self._put_instance()
        self._keepalive = asyncio.create_task(self._keep_alive(), name=f"registry-keepalive:{info.id}")

    async def _put_instance(self) -> None:
        """Write our entry under our lease, re-granting the lease if etcd already expired it."""
        assert self._info is not None and self._lease is not None
        value = msgspec.json.encode(self._info)
        key = self._full(_INSTANCES + self._info.id)
        try:
            await self._call("put", self.client.put(key, value, lease=self._lease))
        except aetcd.ClientError as error:
            if not _lease_missing(error):
                raise
            log.warning("registry lease for %s expired; re-registering", self._info.id)
            self._lease = await self._call("lease grant", self.client.lease(self._ttl))
            await self._call("put", self.client.put(key, value, lease=self._lease))

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                async with self._lease_lock:
                    assert self._lease is not None
                    reply: Any = await self._call("lease refresh", self._lease.refresh())
                    if reply is not None and reply.TTL <= 0:
                        # Expired (e.g. etcd was unreachable for > ttl): put triggers the re-grant.
                        await self._put_instance()
            except Exception as error:  # noqa: BLE001 - etcd errors are many types; each is logged and retried
                # Keep trying: the next tick may reach etcd again before the lease runs out.
                log.warning("registry keep-alive failed: %s", error)

    async def update(self, info: InstanceInfo) -> None:
        if self._info is None:
            raise RuntimeError("update() before register()")
        if info.id != self._info.id:
            raise ValueError("update() cannot change the instance id")
        async with self._lease_lock:
            self._info = info
            await self._put_instance()

    async def deregister(self) -> None:
        await cancel_and_wait(self._keepalive)
        self._keepalive = None
        async with self._lease_lock:
            lease, self._lease, self._info = self._lease, None, None
            if lease is None:
                return
            try:
                await self._call("lease revoke", lease.revoke())
            except Exception as error:  # noqa: BLE001 - etcd errors are many types; each is logged and retried
                log.warning("could not revoke registry lease (the entry expires on its own): %s", error)

    async def instances(self) -> list[InstanceInfo]:
        found = []
        for kv in await self._call("get", self.client.get_prefix(self._full(_INSTANCES))):
            try:
                found.append(msgspec.json.decode(kv.value, type=InstanceInfo))
            except msgspec.DecodeError:
                log.warning("ignoring malformed instance entry %r", kv.key)
        return found

    # -- key-value ------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        found = await self._call("get", self.client.get(self._full(key)))
        return None if found is None else bytes(found.value)

    async def put(self, key: str, value: bytes) -> None:
        await self._call("put", self.client.put(self._full(key), value))

    async def delete(self, key: str) -> None:
        await self._call("delete", self.client.delete(self._full(key)))

    async def get_prefix(self, prefix: str) -> dict[str, bytes]:
        found = await self._call("get", self.client.get_prefix(self._full(prefix)))
        return {self._relative(kv.key): bytes(kv.value) for kv in found}

    async def watch_prefix(self, prefix: str, handler: WatchHandler) -> _EtcdWatch:
        key = self._full(prefix)
        # An empty range read just yields the current revision: watching from the next one
        # means "every change after this call", and lets a re-opened watch resume exactly.
        head = await self._call("get", self.client.get_range(key, key))
        watch = _EtcdWatch(self, key, handler)
        await watch.open(head.header.revision + 1)
        self._watches.add(watch)
        return watch

    def lock(self, name: str, ttl: int) -> _EtcdLock:
        lock = _EtcdLock(self, name, ttl)
        self._locks.add(lock)
        return lock
