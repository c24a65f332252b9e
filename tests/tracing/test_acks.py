"""client.ack lookups on the memory cache and on real Redis: a WebSocket ack asks only the local
map (its connection was delivered by this instance's router), an HTTP ack also the shared store."""

from __future__ import annotations

import time

from pushwire.cache.memory import MemoryCache
from pushwire.cache.redis import RedisCache
from pushwire.settings import Settings
from pushwire.tracing.provider import Tracing
from pushwire.tracing.records import TraceRef
from pushwire.tracing.store import SpanStore

APP = "1001"


def _ref(n: int) -> TraceRef:
    return TraceRef(trace_id=f"{n:032x}", span_id=f"{n:016x}", message_id=f"M{n}")


async def _acked(tracing: Tracing, offset: int, transport: str) -> bool:
    """Whether an ack of (APP, room.a, offset) over `transport` recorded a client.ack span."""
    trace_id = f"{offset:032x}"
    before = len(await tracing.store.spans(trace_id))
    await tracing.acks.ack(APP, "u1", "room.a", offset, offset, time.time_ns(), transport)
    await tracing.store.flush()
    spans = await tracing.store.spans(trace_id)
    return len(spans) == before + 1 and all(s.name == "client.ack" for s in spans)


async def test_a_websocket_ack_asks_only_the_local_map(cache: MemoryCache | RedisCache) -> None:
    tracing = Tracing(Settings(instance_id="inst-1", trace_sample_ratio=0.01), cache, SpanStore(cache))
    # Routed and traced here: in the local map (and the shared store).
    tracing.acks.remember(APP, "room.a", 1, _ref(1))
    # Routed and traced by another instance: only in the shared store.
    other = SpanStore(cache)
    other.add_ref(APP, "room.a", 2, _ref(2))
    await other.flush()
    assert await _acked(tracing, 1, "ws") and await _acked(tracing, 1, "http")
    assert not await _acked(tracing, 2, "ws")  # an unsampled message's ack looks like this: no I/O
    assert await _acked(tracing, 2, "http")  # long-poll/SSE may ack on any instance
    await tracing.stop()
