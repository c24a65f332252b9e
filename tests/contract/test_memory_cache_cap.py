"""The memory cache's cap on remembered keys: a long TTL alone does not bound process memory.

Keys expiring more than an hour away are kept at most `max_remembered`; the earliest deadlines
among them go first (for one TTL: the least recently written), and keys expiring sooner (nonces,
lockouts) or never are not evicted.
"""

from __future__ import annotations

import asyncio

from pushwire.cache.memory import REMEMBER_HORIZON, MemoryCache

DAY = 86_400.0


def remembered(cache: MemoryCache) -> list[str]:
    return sorted(k for k in cache._data if k.startswith(cache.prefix + "seen:"))


async def test_the_sweep_keeps_the_remembered_keys_expiring_last() -> None:
    cache = MemoryCache("cap:", max_remembered=100)
    for i in range(300):  # key i expires in 2 + i days: the last ones written expire last
        await cache.set(f"seen:{i:03}", b"t", ttl=(2 + i) * DAY)
    for i in range(50):
        await cache.set(f"nonce:{i}", b"1", ttl=600)
    await cache.set("config", b"v")
    cache.sweep()
    kept = remembered(cache)
    assert len(kept) <= 100
    assert kept == [f"cap:seen:{i:03}" for i in range(300 - len(kept), 300)]  # the latest deadlines stayed
    assert cache.evicted == 300 - len(kept)
    assert all([await cache.get(f"nonce:{i}") == b"1" for i in range(50)])
    assert await cache.get("config") == b"v"


async def test_keys_expiring_within_the_horizon_are_never_evicted() -> None:
    cache = MemoryCache("cap:", max_remembered=10)
    for i in range(500):
        await cache.set(f"nonce:{i}", b"1", ttl=REMEMBER_HORIZON - 60)
        await cache.set(f"plain:{i}", b"1")
    cache.sweep()
    assert len(cache) == 1000 and cache.evicted == 0


async def test_the_cap_holds_again_after_a_burst_of_short_keys_went() -> None:
    cache = MemoryCache("cap:", max_remembered=100)
    for i in range(2_000):
        await cache.set(f"burst:{i}", b"1", ttl=0.05)
    cache.sweep()  # the check is now due only after the burst has grown by a sixteenth of the cap
    while len(cache):
        await asyncio.sleep(0.06)
        cache.sweep()
    for i in range(200):
        await cache.set(f"seen:{i}", b"t", ttl=30 * DAY)
    cache.sweep()
    assert len(remembered(cache)) <= 100


async def test_the_sweep_task_enforces_the_cap_without_anyone_reading() -> None:
    cache = MemoryCache("cap:", sweep_interval=0.01, max_remembered=100)
    await cache.start()
    try:
        for i in range(1_000):
            await cache.set(f"seen:{i}", b"t", ttl=30 * DAY)
        for _ in range(500):
            if len(cache) <= 100:
                break
            await asyncio.sleep(0.01)
        assert len(cache) <= 100 and cache.evicted >= 900
    finally:
        await cache.close()


async def test_a_rewritten_key_is_kept_over_older_ones() -> None:
    """Last-seen keys all have one TTL: the one written again just now outlives older writes."""
    cache = MemoryCache("cap:", max_remembered=100)
    for i in range(100):
        await cache.set(f"seen:{i:03}", b"t", ttl=30 * DAY)
        await asyncio.sleep(0)
    await cache.set("seen:000", b"again", ttl=30 * DAY)
    for i in range(100, 150):
        await cache.set(f"seen:{i:03}", b"t", ttl=30 * DAY)
    cache.sweep()
    assert await cache.get("seen:000") == b"again"
    assert await cache.get("seen:149") == b"t"
    assert await cache.get("seen:001") is None


async def test_eviction_drops_the_deadline_rows_of_evicted_keys() -> None:
    cache = MemoryCache("cap:", max_remembered=100)
    for i in range(1_000):
        await cache.set(f"seen:{i}", b"t", ttl=30 * DAY)
        cache.sweep()
    assert len(cache._deadlines) <= len(cache) + 100 // 16 + 1
