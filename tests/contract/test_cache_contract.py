"""One contract for every Cache: the memory engine and Redis must behave the same.

The Redis case runs against the real server in tests.services.REDIS_URL (no skips, no mocks):
each cache gets its own key prefix, and every key under it is deleted at teardown.
TTLs are short (0.2 s) and checked with real sleeps, with margins for a busy machine.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from pushwire.cache.base import BucketTake, TokenBucketResult
from pushwire.cache.memory import MemoryCache
from pushwire.cache.redis import RedisCache
from pushwire.errors import BackendUnavailable
from tests.services import REDIS_URL, unique

AnyCache = MemoryCache | RedisCache
Factory = Callable[..., Awaitable[AnyCache]]


@pytest.fixture(params=["memory", "redis"])
async def make_cache(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    """Builds started caches, each with a fresh prefix; closes them and wipes their keys after."""
    made: list[AnyCache] = []

    async def make(prefix: str | None = None) -> AnyCache:
        prefix = prefix or unique("t:") + ":"
        cache: AnyCache = MemoryCache(prefix) if request.param == "memory" else RedisCache(REDIS_URL, prefix)
        await cache.start()
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.close()
    if request.param == "redis":
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            for cache in made:
                keys = [k async for k in client.scan_iter(match=cache.prefix + "*", count=500)]
                if keys:
                    await client.delete(*keys)
        finally:
            await client.aclose()


@pytest.fixture
async def cache(make_cache: Factory) -> AnyCache:
    return await make_cache()


# -- strings ---------------------------------------------------------------------------


async def test_get_set_delete(cache: AnyCache) -> None:
    assert await cache.get("a") is None
    await cache.set("a", b"1")
    await cache.set("b", b"\x00binary\xff")
    assert await cache.get("a") == b"1"
    assert await cache.get("b") == b"\x00binary\xff"
    await cache.set("a", b"2")
    assert await cache.get("a") == b"2"
    await cache.delete("a", "b", "never-existed")
    assert await cache.get("a") is None
    assert await cache.get("b") is None
    await cache.delete()  # no keys: nothing to do


async def test_set_ttl_expires_and_plain_set_clears_it(cache: AnyCache) -> None:
    await cache.set("short", b"x", ttl=0.2)
    await cache.set("kept", b"x", ttl=0.2)
    await cache.set("kept", b"y")  # SET without a TTL makes the key persistent again
    assert await cache.get("short") == b"x"
    await asyncio.sleep(0.35)
    assert await cache.get("short") is None
    assert await cache.get("kept") == b"y"


async def test_set_if_absent(cache: AnyCache) -> None:
    assert await cache.set_if_absent("nonce", b"first", ttl=0.2) is True
    assert await cache.set_if_absent("nonce", b"second", ttl=0.2) is False
    assert await cache.get("nonce") == b"first"
    await asyncio.sleep(0.35)
    assert await cache.set_if_absent("nonce", b"third", ttl=5) is True
    assert await cache.get("nonce") == b"third"


async def test_set_if_absent_respects_any_existing_key(cache: AnyCache) -> None:
    await cache.set("plain", b"v")
    await cache.list_push_capped("list", [b"v"], max_len=3)
    assert await cache.set_if_absent("plain", b"w", ttl=1) is False
    assert await cache.set_if_absent("list", b"w", ttl=1) is False


# -- counters --------------------------------------------------------------------------


async def test_incr_counts_from_zero(cache: AnyCache) -> None:
    assert await cache.incr("n") == 1
    assert await cache.incr("n", 5) == 6
    assert await cache.incr("n", -10) == -4
    assert await cache.get("n") == b"-4"  # counters are plain strings, as in Redis


async def test_incr_ttl_is_set_only_on_creation(cache: AnyCache) -> None:
    assert await cache.incr("window", ttl=0.5) == 1
    await asyncio.sleep(0.2)
    # A later ttl must not extend the window: the key still dies 0.5 s after creation.
    assert await cache.incr("window", ttl=10) == 2
    await asyncio.sleep(0.45)
    assert await cache.get("window") is None
    assert await cache.incr("window", ttl=10) == 1


async def test_incr_without_ttl_keeps_existing_ttl(cache: AnyCache) -> None:
    await cache.incr("c", ttl=0.2)
    assert await cache.incr("c") == 2
    await asyncio.sleep(0.35)
    assert await cache.get("c") is None


async def test_incr_refuses_non_integer(cache: AnyCache) -> None:
    await cache.set("text", b"hello")
    with pytest.raises(ValueError):
        await cache.incr("text")
    assert await cache.get("text") == b"hello"


# -- token bucket ----------------------------------------------------------------------


async def test_token_bucket_burst_then_refused(cache: AnyCache) -> None:
    for expected in (4, 3, 2, 1, 0):
        result = await cache.take_tokens("rl", rate=1.0, burst=5)
        assert result.allowed
        assert result.retry_after == 0
        assert result.remaining == pytest.approx(expected, abs=0.2)
    refused = await cache.take_tokens("rl", rate=1.0, burst=5)
    assert not refused.allowed
    assert refused.remaining < 1
    assert 0.5 < refused.retry_after <= 1.0  # one token at 1/s, minus what trickled in


async def test_token_bucket_refills_over_time(cache: AnyCache) -> None:
    assert (await cache.take_tokens("rl", rate=5, burst=2, cost=2)).allowed
    refused = await cache.take_tokens("rl", rate=5, burst=2)
    assert not refused.allowed
    assert 0 < refused.retry_after <= 0.2
    await asyncio.sleep(0.3)
    assert (await cache.take_tokens("rl", rate=5, burst=2)).allowed
    # Refill stops at burst however long the bucket sits idle (0.7 s would be 3.5 tokens).
    await asyncio.sleep(0.7)
    assert (await cache.take_tokens("rl", rate=5, burst=2, cost=0)).remaining == pytest.approx(2)


async def test_token_bucket_cost(cache: AnyCache) -> None:
    first = await cache.take_tokens("rl", rate=1, burst=10, cost=7)
    assert first.allowed
    assert first.remaining == pytest.approx(3, abs=0.1)
    refused = await cache.take_tokens("rl", rate=1, burst=10, cost=5)
    assert not refused.allowed
    assert 1.8 < refused.retry_after <= 2.0  # 2 more tokens at 1/s
    # A refused request takes nothing: a cheaper one still fits.
    assert (await cache.take_tokens("rl", rate=1, burst=10, cost=3)).allowed


async def test_token_bucket_cost_above_burst_never_fits(cache: AnyCache) -> None:
    result = await cache.take_tokens("rl", rate=100, burst=3, cost=4)
    assert not result.allowed
    assert result.retry_after == math.inf
    assert result.remaining == pytest.approx(3)


async def test_token_buckets_are_per_key(cache: AnyCache) -> None:
    assert (await cache.take_tokens("a", rate=0.01, burst=1)).allowed
    assert not (await cache.take_tokens("a", rate=0.01, burst=1)).allowed
    assert (await cache.take_tokens("b", rate=0.01, burst=1)).allowed


@pytest.mark.parametrize(("rate", "burst", "cost"), [(0, 1, 1), (-1, 1, 1), (math.nan, 1, 1), (1, 0, 1), (1, 1, -1)])
async def test_token_bucket_bad_input(cache: AnyCache, rate: float, burst: int, cost: int) -> None:
    with pytest.raises(ValueError):
        await cache.take_tokens("rl", rate=rate, burst=burst, cost=cost)


# -- admit (a signed request's nonce, stamp and rate in one round trip) ------------------


async def test_admit_nonce_once_and_stamp(cache: AnyCache) -> None:
    first = await cache.admit("n1", 0.2, "stamp")
    assert (first.fresh, first.stamp, first.bucket) == (True, b"", None)  # no stamp yet: b""
    await cache.set("stamp", b"s1")
    again = await cache.admit("n1", 0.2, "stamp")
    assert (again.fresh, again.stamp) == (False, b"s1")
    assert await cache.get("n1") == b"1"  # the nonce is an ordinary key
    await asyncio.sleep(0.35)
    assert (await cache.admit("n1", 0.2, "stamp")).fresh  # expired with its TTL


async def test_admit_takes_tokens_only_for_a_fresh_nonce(cache: AnyCache) -> None:
    bucket = BucketTake(key="rl", rate=0.01, burst=2, cost=1)
    taken = await cache.admit("n1", 5, "stamp", bucket)
    assert taken.fresh and taken.bucket is not None and taken.bucket.allowed
    assert taken.bucket.remaining == pytest.approx(1, abs=0.01)
    replay = await cache.admit("n1", 5, "stamp", bucket)
    assert not replay.fresh and replay.bucket is None  # a replay costs the app nothing
    assert (await cache.admit("n2", 5, "stamp", bucket)).bucket == TokenBucketResult(
        allowed=True, remaining=pytest.approx(0, abs=0.01), retry_after=0.0
    )
    refused = await cache.admit("n3", 5, "stamp", bucket)
    assert refused.fresh and refused.bucket is not None and not refused.bucket.allowed
    assert refused.bucket.retry_after > 50  # one token at 0.01/s
    # admit and take_tokens share the bucket.
    assert not (await cache.take_tokens("rl", rate=0.01, burst=2)).allowed


async def test_admit_bucket_cost_and_bad_arguments(cache: AnyCache) -> None:
    big = await cache.admit("n1", 5, "stamp", BucketTake(key="rl", rate=100, burst=3, cost=4))
    assert big.bucket is not None and not big.bucket.allowed and big.bucket.retry_after == math.inf
    with pytest.raises(ValueError):
        await cache.admit("n2", 0, "stamp")
    with pytest.raises(ValueError):
        await cache.admit("n3", 5, "stamp", BucketTake(key="rl", rate=0, burst=1))
    assert await cache.get("n2") is None and await cache.get("n3") is None  # refused before any write


async def test_concurrent_admits_each_get_their_own_answer(cache: AnyCache) -> None:
    """Many admits in flight at once (RedisCache sends them together, in pipelines of at most
    256): every nonce is fresh once, each caller gets its own answer, the bucket counts them all."""
    bucket = BucketTake(key="rl-many", rate=0.001, burst=500, cost=1)
    nonces = [f"many-{i}" for i in range(600)] + [f"many-{i}" for i in range(0, 600, 7)]
    answers = await asyncio.gather(*(cache.admit(n, 5, "stamp", bucket) for n in nonces))
    fresh = [n for n, a in zip(nonces, answers, strict=True) if a.fresh]
    assert sorted(fresh) == sorted(set(nonces))  # each nonce fresh exactly once
    allowed = [a for a in answers if a.fresh and a.bucket is not None and a.bucket.allowed]
    assert len(allowed) == 500  # the burst, whatever the batching
    assert all(a.bucket is None for a in answers if not a.fresh)


# -- capped lists ----------------------------------------------------------------------


async def test_list_push_order_and_range(cache: AnyCache) -> None:
    await cache.list_push_capped("h", [b"a", b"b", b"c"], max_len=10)
    assert await cache.list_range("h", 0, -1) == [b"c", b"b", b"a"]
    await cache.list_push_capped("h", [b"d"], max_len=10)
    assert await cache.list_range("h", 0, -1) == [b"d", b"c", b"b", b"a"]
    assert await cache.list_range("h", 0, 0) == [b"d"]
    assert await cache.list_range("h", 1, 2) == [b"c", b"b"]
    assert await cache.list_range("h", -2, -1) == [b"b", b"a"]
    assert await cache.list_range("h", -100, 1) == [b"d", b"c"]
    assert await cache.list_range("h", 2, 100) == [b"b", b"a"]
    assert await cache.list_range("h", 3, 1) == []
    assert await cache.list_range("h", 10, 20) == []
    assert await cache.list_range("h", -1, -2) == []
    assert await cache.list_length("h") == 4


async def test_list_range_matches_lrange_for_every_index_pair(cache: AnyCache) -> None:
    items = [b"4", b"3", b"2", b"1", b"0"]  # head first, as pushing 0..4 leaves it
    await cache.list_push_capped("h", list(reversed(items)), max_len=10)
    for start in range(-7, 8):
        for stop in range(-7, 8):
            # Redis's rule: negatives count from the tail, stop is inclusive, out of range clamps.
            first = max(0, start + 5 if start < 0 else start)
            last = min(4, stop + 5 if stop < 0 else stop)
            expected = items[first : last + 1] if first <= last else []
            assert await cache.list_range("h", start, stop) == expected, (start, stop)


async def test_list_is_trimmed_to_max_len(cache: AnyCache) -> None:
    await cache.list_push_capped("h", [b"1", b"2", b"3", b"4", b"5"], max_len=3)
    assert await cache.list_range("h", 0, -1) == [b"5", b"4", b"3"]
    await cache.list_push_capped("h", [b"6"], max_len=3)
    assert await cache.list_range("h", 0, -1) == [b"6", b"5", b"4"]
    await cache.list_push_capped("h", [b"7"], max_len=2)  # a smaller cap trims the old tail too
    assert await cache.list_range("h", 0, -1) == [b"7", b"6"]
    await cache.list_push_capped("h", [b"8"], max_len=5)
    assert await cache.list_range("h", 0, -1) == [b"8", b"7", b"6"]
    await cache.list_push_capped("h", [], max_len=1)  # nothing pushed, still trimmed
    assert await cache.list_range("h", 0, -1) == [b"8"]
    await cache.list_push_capped("missing", [], max_len=1)
    assert await cache.list_length("missing") == 0


async def test_list_ttl(cache: AnyCache) -> None:
    await cache.list_push_capped("h", [b"a"], max_len=3, ttl=0.3)
    await cache.list_push_capped("h", [b"b"], max_len=3)  # no ttl: the existing one stays
    await cache.list_push_capped("kept", [b"a"], max_len=3, ttl=0.2)
    await asyncio.sleep(0.1)
    await cache.list_push_capped("kept", [b"b"], max_len=3, ttl=5)  # a ttl refreshes it
    assert await cache.list_length("h") == 2
    await asyncio.sleep(0.35)
    assert await cache.list_length("h") == 0
    assert await cache.list_range("h", 0, -1) == []
    assert await cache.list_range("kept", 0, -1) == [b"b", b"a"]


async def test_list_length_of_missing_key(cache: AnyCache) -> None:
    assert await cache.list_length("nope") == 0
    assert await cache.list_range("nope", 0, -1) == []


@pytest.mark.parametrize("max_len", [0, -1])
async def test_list_bad_max_len(cache: AnyCache, max_len: int) -> None:
    with pytest.raises(ValueError):
        await cache.list_push_capped("h", [b"a"], max_len=max_len)
    assert await cache.list_length("h") == 0


# -- hashes ----------------------------------------------------------------------------


async def test_hash_set_get_delete(cache: AnyCache) -> None:
    assert await cache.hash_get_all("s") == {}
    await cache.hash_set("s", {"a": b"1", "b": b"2"})
    assert await cache.hash_get_all("s") == {"a": b"1", "b": b"2"}
    await cache.hash_set("s", {"b": b"3", "c": b"4"})  # merges, overwriting b
    assert await cache.hash_get_all("s") == {"a": b"1", "b": b"3", "c": b"4"}
    await cache.hash_delete("s", "a", "never-existed")
    assert await cache.hash_get_all("s") == {"b": b"3", "c": b"4"}
    await cache.hash_delete("s")  # no fields: nothing to do
    await cache.hash_set("s", {})  # empty mapping: nothing to do
    assert await cache.hash_get_all("s") == {"b": b"3", "c": b"4"}
    await cache.hash_delete("s", "b", "c")
    assert await cache.hash_get_all("s") == {}
    assert await cache.set_if_absent("s", b"x", ttl=1)  # the emptied hash is gone


async def test_hash_ttl(cache: AnyCache) -> None:
    await cache.hash_set("s", {"a": b"1"}, ttl=0.3)
    await cache.hash_set("s", {"b": b"2"})  # no ttl: the existing one stays
    assert await cache.hash_get_all("s") == {"a": b"1", "b": b"2"}
    await asyncio.sleep(0.45)
    assert await cache.hash_get_all("s") == {}


# -- cross-cutting ---------------------------------------------------------------------


async def test_prefix_isolation(make_cache: Factory) -> None:
    one, two = await make_cache(), await make_cache()
    await one.set("k", b"one")
    await two.set("k", b"two")
    await one.list_push_capped("l", [b"x"], max_len=5)
    await one.hash_set("h", {"f": b"1"})
    assert await one.get("k") == b"one"
    assert await two.get("k") == b"two"
    assert await two.list_length("l") == 0
    assert await two.hash_get_all("h") == {}
    assert await two.set_if_absent("l", b"y", ttl=1)
    assert (await one.take_tokens("t", rate=0.01, burst=1)).allowed
    assert (await two.take_tokens("t", rate=0.01, burst=1)).allowed
    await two.delete("k")
    assert await one.get("k") == b"one"


async def test_wrong_type_raises_type_error(cache: AnyCache) -> None:
    await cache.set("str", b"v")
    await cache.list_push_capped("list", [b"v"], max_len=3)
    with pytest.raises(TypeError):
        await cache.list_push_capped("str", [b"x"], max_len=3)
    with pytest.raises(TypeError):
        await cache.hash_get_all("list")
    with pytest.raises(TypeError):
        await cache.get("list")
    with pytest.raises(TypeError):
        await cache.incr("list")
    assert await cache.get("str") == b"v"
    assert await cache.list_range("list", 0, -1) == [b"v"]


@pytest.mark.parametrize("ttl", [0, -1, math.inf, math.nan])
async def test_bad_ttl(cache: AnyCache, ttl: float) -> None:
    with pytest.raises(ValueError):
        await cache.set("k", b"v", ttl=ttl)
    with pytest.raises(ValueError):
        await cache.set_if_absent("k", b"v", ttl=ttl)
    with pytest.raises(ValueError):
        await cache.incr("k", ttl=ttl)
    with pytest.raises(ValueError):
        await cache.hash_set("k", {"f": b"v"}, ttl=ttl)
    assert await cache.get("k") is None


async def test_ping(cache: AnyCache) -> None:
    await cache.ping()


# -- concurrency -----------------------------------------------------------------------


async def test_concurrent_set_if_absent_has_one_winner(cache: AnyCache) -> None:
    results = await asyncio.gather(*(cache.set_if_absent("nonce", str(i).encode(), ttl=10) for i in range(50)))
    assert results.count(True) == 1
    winner = results.index(True)
    assert await cache.get("nonce") == str(winner).encode()


async def test_concurrent_take_tokens_allows_exactly_burst(cache: AnyCache) -> None:
    results = await asyncio.gather(*(cache.take_tokens("rl", rate=0.001, burst=100) for _ in range(200)))
    assert sum(r.allowed for r in results) == 100
    assert all(r.retry_after > 0 for r in results if not r.allowed)


async def test_concurrent_incr_loses_nothing(cache: AnyCache) -> None:
    await asyncio.gather(*(cache.incr("n", ttl=10) for _ in range(100)))
    assert await cache.get("n") == b"100"


# -- backend-specific ------------------------------------------------------------------


async def test_redis_start_fails_when_nothing_listens() -> None:
    cache = RedisCache("redis://127.0.0.1:1/0")  # port 1: connection refused
    with pytest.raises(BackendUnavailable) as raised:
        await cache.start()
    assert raised.value.backend == "cache"


async def test_redis_unstarted_is_unavailable() -> None:
    with pytest.raises(BackendUnavailable):
        await RedisCache(REDIS_URL).get("k")


async def test_memory_sweep_reaps_unread_keys() -> None:
    cache = MemoryCache(unique("t:"), sweep_interval=0.05)
    await cache.start()
    try:
        for i in range(100):
            await cache.set(f"k{i}", b"v", ttl=0.1)
            await cache.list_push_capped(f"l{i}", [b"v"], max_len=2, ttl=0.1)
        await cache.set("forever", b"v")
        assert len(cache) == 201
        await asyncio.sleep(0.3)
        assert len(cache) == 1  # reaped without anyone reading them
    finally:
        await cache.close()


async def test_memory_refreshing_a_ttl_keeps_bookkeeping_bounded() -> None:
    cache = MemoryCache()
    for _ in range(10_000):
        await cache.list_push_capped("hot", [b"v"], max_len=5, ttl=60)
    assert len(cache._deadlines) <= 2 * len(cache) + 1024


# -- batched forms (the span store's flushes and the console's reads) -----------------------


async def test_list_push_capped_many_caps_each_list_and_sets_ttls(cache: AnyCache) -> None:
    from pushwire.cache.base import ListPush

    await cache.list_push_capped_many(
        [
            ListPush("a", [b"1", b"2", b"3"], max_len=2, ttl=0.2),
            ListPush("b", [b"x"], max_len=5),
            ListPush("a", [b"4"], max_len=2, ttl=0.2),  # same key twice: applied in order
        ]
    )
    await cache.list_push_capped_many([])
    assert await cache.list_range_many(["a", "b", "missing"], 0, -1) == [[b"4", b"3"], [b"x"], []]
    await asyncio.sleep(0.35)
    assert await cache.list_range_many(["a", "b"], 0, -1) == [[], [b"x"]]
    assert await cache.list_range_many([], 0, -1) == []
    with pytest.raises(ValueError):
        await cache.list_push_capped_many([ListPush("c", [b"1"], max_len=0)])
    assert await cache.list_length("c") == 0


async def test_set_many_and_get_many(cache: AnyCache) -> None:
    await cache.set_many({"k1": b"v1", "k2": b"\x00v2"}, ttl=0.2)
    await cache.set_many({"k3": b"v3"})
    await cache.set_many({})
    assert await cache.get_many(["k1", "nope", "k2", "k3"]) == [b"v1", None, b"\x00v2", b"v3"]
    assert await cache.get_many([]) == []
    await asyncio.sleep(0.35)
    assert await cache.get_many(["k1", "k2", "k3"]) == [None, None, b"v3"]
    with pytest.raises(ValueError):
        await cache.set_many({"k4": b"v"}, ttl=0)


async def test_redis_admit_survives_a_script_flush() -> None:
    """Redis restarted (or SCRIPT FLUSH): batched admits reload the script and still answer."""
    cache = RedisCache(REDIS_URL, prefix=unique("pwtest:") + ":")
    await cache.start()
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        assert (await cache.admit("sf-1", 5, "stamp")).fresh
        await client.script_flush()
        answers = await asyncio.gather(*(cache.admit(f"sf-{i}", 5, "stamp") for i in range(1, 4)))
        assert [a.fresh for a in answers] == [False, True, True]
    finally:
        await client.aclose()
        await cache.close()
