"""One contract for every Registry: the local engine and etcd must behave the same.

The etcd case runs against the real server in tests.services.ETCD_URL (no skips): each test
gets its own key prefix, deleted at teardown. Crashes are simulated with `_crash_for_tests()`,
which stops keep-alives and drops the connection without revoking anything.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aetcd
import pytest

from pushwire.errors import BackendUnavailable
from pushwire.registry.base import InstanceInfo, WatchEvent
from pushwire.registry.etcd import EtcdRegistry
from pushwire.registry.local import LocalRegistry
from tests.services import ETCD_URL, unique

# Both implementations plus the test-only crash hook.
AnyRegistry = LocalRegistry | EtcdRegistry
Factory = Callable[[], Awaitable[AnyRegistry]]


def _etcd_address() -> tuple[str, int]:
    url = urlsplit(ETCD_URL)
    assert url.scheme == "etcd" and url.hostname, ETCD_URL
    return url.hostname, url.port or 2379


def _info(instance_id: str, connections: int = 0) -> InstanceInfo:
    return InstanceInfo(
        id=instance_id,
        address="10.0.0.1:8000",
        version="0.1.0",
        started_at="2024-01-01T00:00:00Z",
        connections=connections,
    )


async def _eventually(check: Callable[[], Awaitable[bool]], within: float) -> float:
    """Poll until check() is true; returns the seconds it took, fails after `within`."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within, f"condition not met within {within}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture(params=["local", "etcd"])
async def make_registry(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """Builds started registries sharing one namespace (one etcd prefix / one local engine)."""
    prefix = "/pwtest/" + unique("") + "/"
    made: list[AnyRegistry] = []

    async def make() -> AnyRegistry:
        registry: AnyRegistry
        if request.param == "local":
            registry = LocalRegistry(prefix)
        else:
            registry = EtcdRegistry(*_etcd_address(), prefix=prefix)
        await registry.start()
        made.append(registry)
        return registry

    yield make
    for registry in made:
        await registry.close()
    if request.param == "etcd":
        client = aetcd.Client(*_etcd_address())
        try:
            await client.delete_prefix(prefix.encode())
        finally:
            await client.close()


@pytest.fixture
async def registry(make_registry: Factory) -> AnyRegistry:
    return await make_registry()


async def test_kv_get_put_delete_get_prefix(registry: AnyRegistry) -> None:
    assert await registry.get("config/a") is None
    await registry.put("config/a", b"1")
    await registry.put("config/b", b"2")
    await registry.put("other/c", b"3")
    assert await registry.get("config/a") == b"1"
    await registry.put("config/a", b"one")
    assert await registry.get("config/a") == b"one"
    assert await registry.get_prefix("config/") == {"config/a": b"one", "config/b": b"2"}
    await registry.delete("config/a")
    await registry.delete("config/missing")  # deleting an absent key is not an error
    assert await registry.get("config/a") is None
    assert await registry.get_prefix("config/") == {"config/b": b"2"}
    await registry.ping()


async def test_watch_sees_puts_and_deletes_in_order(registry: AnyRegistry) -> None:
    await registry.put("config/before", b"0")  # happened before the watch: not reported
    seen: list[WatchEvent] = []

    async def handler(event: WatchEvent) -> None:
        seen.append(event)

    watch = await registry.watch_prefix("config/", handler)
    await registry.put("config/a", b"1")
    await registry.put("elsewhere/x", b"-")
    await registry.put("config/a", b"2")
    await registry.delete("config/a")
    await registry.put("config/b", b"3")
    expected = [
        WatchEvent(kind="put", key="config/a", value=b"1"),
        WatchEvent(kind="put", key="config/a", value=b"2"),
        WatchEvent(kind="delete", key="config/a"),
        WatchEvent(kind="put", key="config/b", value=b"3"),
    ]

    async def all_seen() -> bool:
        return len(seen) >= len(expected)

    await _eventually(all_seen, within=3)
    assert seen == expected

    await watch.cancel()
    await registry.put("config/c", b"4")
    await asyncio.sleep(0.3)
    assert len(seen) == len(expected)


async def test_watch_survives_a_failing_handler(registry: AnyRegistry) -> None:
    seen: list[str] = []

    async def handler(event: WatchEvent) -> None:
        seen.append(event.key)
        if event.key == "config/bad":
            raise RuntimeError("handler bug")

    await registry.watch_prefix("config/", handler)
    await registry.put("config/bad", b"1")
    await registry.put("config/good", b"2")

    async def both_seen() -> bool:
        return seen == ["config/bad", "config/good"]

    await _eventually(both_seen, within=3)


async def test_register_lists_and_update_keeps_the_entry(make_registry: Factory) -> None:
    node, observer = await make_registry(), await make_registry()
    await node.register(_info("node-a"), ttl=2)
    assert await observer.instances() == [_info("node-a")]

    await asyncio.sleep(3)  # longer than the ttl: only the keep-alive keeps it there
    assert await observer.instances() == [_info("node-a")]

    await node.update(_info("node-a", connections=7))
    assert await observer.instances() == [_info("node-a", connections=7)]
    await asyncio.sleep(1)
    assert await observer.instances() == [_info("node-a", connections=7)]


async def test_instance_expires_after_a_crash(make_registry: Factory) -> None:
    node, observer = await make_registry(), await make_registry()
    await node.register(_info("node-a"), ttl=2)
    assert [i.id for i in await observer.instances()] == ["node-a"]

    await node._crash_for_tests()

    async def gone() -> bool:
        return await observer.instances() == []

    await _eventually(gone, within=2 + 2)


async def test_close_and_deregister_remove_at_once(make_registry: Factory) -> None:
    first, second, observer = await make_registry(), await make_registry(), await make_registry()
    await first.register(_info("node-a"), ttl=30)
    await second.register(_info("node-b"), ttl=30)
    assert sorted(i.id for i in await observer.instances()) == ["node-a", "node-b"]

    await first.close()
    assert [i.id for i in await observer.instances()] == ["node-b"]
    await second.deregister()
    assert await observer.instances() == []


async def test_lock_is_mutually_exclusive(make_registry: Factory) -> None:
    a, b = await make_registry(), await make_registry()
    lock_a, lock_b = a.lock("compaction", ttl=10), b.lock("compaction", ttl=10)

    assert await lock_a.acquire(timeout=0)
    assert lock_a.is_held
    assert not await lock_b.acquire(timeout=0)
    started = time.monotonic()
    assert not await lock_b.acquire(timeout=0.5)
    assert time.monotonic() - started >= 0.45
    assert not lock_b.is_held
    assert await lock_a.refresh()

    await lock_a.release()
    assert not lock_a.is_held
    assert await lock_b.acquire(timeout=0)
    assert not await lock_a.acquire(timeout=0)
    await lock_b.release()


async def test_lock_waiter_wakes_on_release(registry: AnyRegistry) -> None:
    holder, waiter = registry.lock("job", ttl=10), registry.lock("job", ttl=10)
    assert await holder.acquire(timeout=0)
    pending = asyncio.create_task(waiter.acquire(timeout=5))
    await asyncio.sleep(0.3)
    assert not pending.done()

    started = time.monotonic()
    await holder.release()
    assert await asyncio.wait_for(pending, 5)
    assert time.monotonic() - started < 1.5
    assert waiter.is_held


async def test_lock_frees_itself_after_the_holder_crashes(make_registry: Factory) -> None:
    a, b = await make_registry(), await make_registry()
    assert await a.lock("leader", ttl=2).acquire(timeout=0)
    await a._crash_for_tests()

    started = time.monotonic()
    lock_b = b.lock("leader", ttl=2)
    assert await lock_b.acquire(timeout=5)
    assert time.monotonic() - started < 3.5
    assert await lock_b.refresh()


async def test_unrefreshed_lock_is_lost(make_registry: Factory) -> None:
    a, b = await make_registry(), await make_registry()
    lock_a = a.lock("leader", ttl=2)
    assert await lock_a.acquire(timeout=0)
    await asyncio.sleep(1)
    assert await lock_a.refresh()  # refreshing extends the lease past the original 2 s
    await asyncio.sleep(1.5)
    assert lock_a.is_held

    lock_b = b.lock("leader", ttl=2)
    assert await lock_b.acquire(timeout=4)  # lock_a stopped refreshing: it expires
    assert not await lock_a.refresh()
    assert not lock_a.is_held
    assert lock_b.is_held


async def test_unreachable_etcd_fails_fast() -> None:
    registry = EtcdRegistry("127.0.0.1", 1, prefix="/pwtest/unreachable/")
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as raised:
        await registry.start()
    assert raised.value.backend == "registry"
    assert time.monotonic() - started < 5


def test_registries_satisfy_the_protocol() -> None:
    # Static check helper: both classes expose every Registry method.
    from pushwire.registry.base import Registry

    names = [n for n in vars(Registry) if not n.startswith("_")]
    local: Any = LocalRegistry()
    etcd: Any = EtcdRegistry("127.0.0.1", 2379)
    for name in names:
        assert callable(getattr(local, name)), name
        assert callable(getattr(etcd, name)), name
