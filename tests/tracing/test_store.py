"""The span store on the memory cache and on real Redis: batching, bounds, TTLs, lookups, views."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from pushwire.cache.memory import MemoryCache
from pushwire.cache.redis import RedisCache
from pushwire.tracing import store as store_module
from pushwire.tracing.records import RecentEntry, StoredSpan, TraceRef
from pushwire.tracing.store import SpanStore
from pushwire.tracing.views import TraceFilter, load_trace, recent_summaries, waterfall
from tests.services import REDIS_URL

APP = "1001"


def span(trace: str, sid: str, name: str, start: int, end: int, parent: str = "", **attrs: object) -> StoredSpan:
    return StoredSpan(
        trace_id=trace,
        span_id=sid,
        parent_id=parent,
        name=name,
        start_ns=start,
        end_ns=end,
        instance=str(attrs.pop("instance", "i1")),
        error=bool(attrs.pop("error", False)),
        attributes={"app_id": APP, **attrs},
    )  # type: ignore[dict-item]


async def test_flush_writes_in_batches_and_reads_back(cache: MemoryCache | RedisCache) -> None:
    store, t0 = SpanStore(cache), time.time_ns()
    trace = "1" * 32
    store.add_span(span(trace, "a" * 16, "push", t0, t0 + 9_000_000))
    store.add_span(span(trace, "b" * 16, "db.commit", t0 + 1_000_000, t0 + 3_000_000, "a" * 16))
    store.add_span(
        span(
            trace,
            "c" * 16,
            "hub.deliver",
            t0 + 5_000_000,
            t0 + 8_000_000,
            "b" * 16,
            message_id="M1",
            user_id="u1",
            instance="i2",
        )
    )
    store.add_recent(
        RecentEntry(trace_id=trace, app_id=APP, event="e", channels=["user.u1"], ts_ns=t0, message_id="M1")
    )
    store.add_ref(APP, "user.u1", 7, TraceRef(trace_id=trace, span_id="c" * 16, message_id="M1"))
    assert await store.spans(trace) == []  # buffered: nothing written before the flush
    assert await store.flush() == 3 and await store.flush() == 0
    assert [s.name for s in await store.spans(trace)] == ["push", "db.commit", "hub.deliver"]
    assert await store.trace_of("M1") == trace and await store.trace_of("nope") is None
    assert await store.ref(APP, "user.u1", 7) == TraceRef(trace_id=trace, span_id="c" * 16, message_id="M1")
    [entry] = await store.recent(APP)
    assert entry.message_id == "M1"
    rows, held = await recent_summaries(store, APP, TraceFilter())
    assert held == 1 and rows[0].latency_ms == 9.0 and rows[0].spans == 3 and rows[0].instances == ["i1", "i2"]
    assert rows[0].users == ["u1"] and not rows[0].failed
    for f, shown in (
        (TraceFilter(user="u1"), True),
        (TraceFilter(user="u2"), False),
        (TraceFilter(min_ms=8.5), True),
        (TraceFilter(min_ms=10), False),
        (TraceFilter(failed=True), False),
        (TraceFilter(channel="user.u1"), True),
        (TraceFilter(channel="room.x"), False),
    ):
        assert bool((await recent_summaries(store, APP, f))[0]) is shown, f
    found = await load_trace(store, APP, "M1")
    assert found is not None and found[0] == trace
    assert [(r.span.name, r.depth) for r in waterfall(found[1])] == [("push", 0), ("db.commit", 1), ("hub.deliver", 2)]
    assert await load_trace(store, "other-app", "M1") is None and await load_trace(store, APP, "nope") is None


async def test_bounds_and_ttls(cache: MemoryCache | RedisCache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "ORIGIN_CAP", 5)
    monkeypatch.setattr(store_module, "DELIVERY_CAP", 3)
    store, t0, trace = SpanStore(cache, recent_cap=4), time.time_ns(), "2" * 32
    store.add_span(span(trace, "0" * 16, "push", t0, t0 + 1))
    for i in range(10):  # many instances' delivery spans cannot push the origin spans out
        store.add_span(span(trace, f"{i + 1:016x}", "hub.deliver", t0 + i, t0 + i + 1))
    for i in range(10):
        store.add_recent(
            RecentEntry(trace_id=trace, app_id=APP, event="e", channels=["c"], ts_ns=t0 + i, message_id=f"M{i}")
        )
    await store.flush()
    names = [s.name for s in await store.spans(trace)]
    assert names.count("push") == 1 and names.count("hub.deliver") == 3
    assert [e.message_id for e in await store.recent(APP)] == ["M9", "M8", "M7", "M6"]  # newest first, capped
    if isinstance(cache, RedisCache):
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            for key in (
                store_module.origin_key(trace),
                store_module.delivery_key(trace),
                store_module.recent_key(APP),
                store_module.message_key("M9"),
            ):
                assert 3590 <= await client.ttl(cache.prefix + key) <= 3600, key
        finally:
            await client.aclose()
    short = SpanStore(cache, ttl=0.2)
    short.add_span(span("3" * 32, "a" * 16, "push", t0, t0 + 1))
    short.add_recent(RecentEntry(trace_id="3" * 32, app_id="9", event="e", channels=["c"], ts_ns=t0, message_id="X"))
    await short.flush()
    assert await short.spans("3" * 32) and await short.trace_of("X")
    await asyncio.sleep(0.35)
    assert await short.spans("3" * 32) == [] and await short.trace_of("X") is None and await short.recent("9") == []


async def test_pending_is_bounded_and_flusher_runs_on_its_own(
    cache: MemoryCache | RedisCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MAX_PENDING", 10)
    store, t0 = SpanStore(cache, flush_interval=0.05, flush_spans=4), time.time_ns()
    for i in range(15):
        store.add_span(span("4" * 32, f"{i + 1:016x}", "push", t0, t0 + 1))
    assert store.dropped == 5
    await store.start()
    try:
        async with asyncio.timeout(3):
            while store.written < 10:
                await asyncio.sleep(0.02)
        store.add_span(span("4" * 32, "f" * 16, "db.commit", t0, t0 + 1))
        async with asyncio.timeout(3):  # below flush_spans: written after flush_interval
            while store.written < 11:
                await asyncio.sleep(0.02)
    finally:
        await store.stop()
    assert len(await store.spans("4" * 32)) == 11
