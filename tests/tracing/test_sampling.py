"""PUSHWIRE_TRACE_SAMPLE_RATIO: parsing and its production default, our own draw before any span,
ratio 0 writes nothing and carries no traceparent, console pushes are forced.

(A caller's traceparent does not decide: tests/tracing/test_caller_context.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NoReturn

import pytest
import sqlalchemy as sa
from opentelemetry.trace import INVALID_SPAN, SpanKind, Tracer

from pushwire.cache.memory import MemoryCache
from pushwire.errors import SettingsError
from pushwire.messaging.envelope import ENVELOPE_DECODER
from pushwire.settings import Settings, load_settings
from pushwire.storage.dialect import table_of
from pushwire.storage.models import OutboxEntry
from pushwire.tracing.context import context_from, forced_context, is_sampled
from pushwire.tracing.provider import Tracing
from pushwire.tracing.sampling import MessageSampler, draw
from pushwire.tracing.spans import downstream_traceparent, push_span
from pushwire.tracing.store import recent_key
from tests.live import Client, LiveServer, live_server
from tests.tracing.conftest import live_env


def test_ratio_setting(tmp_path: Path) -> None:
    env = {"PUSHWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/p.db"}
    assert load_settings(env).trace_sample_ratio == Settings().trace_sample_ratio == 0.01  # production's
    assert load_settings({**env, "PUSHWIRE_TRACE_SAMPLE_RATIO": "1"}).trace_sample_ratio == 1.0  # the demo's
    assert load_settings({**env, "PUSHWIRE_TRACE_SAMPLE_RATIO": "0.25"}).trace_sample_ratio == 0.25
    assert load_settings({**env, "PUSHWIRE_TRACE_SAMPLE_RATIO": "0"}).trace_sample_ratio == 0.0
    for bad, fragment in (
        ("1.5", "outside 0..1"),
        ("-0.1", "outside 0..1"),
        ("nan", "outside 0..1"),
        ("ten percent", "not a number"),
    ):
        with pytest.raises(SettingsError) as raised:
            load_settings({**env, "PUSHWIRE_TRACE_SAMPLE_RATIO": bad})
        assert "PUSHWIRE_TRACE_SAMPLE_RATIO" in str(raised.value) and fragment in str(raised.value)


def test_the_draw_is_ours_and_the_sdk_only_follows_it() -> None:
    assert not any(draw(0.0) for _ in range(10_000)) and all(draw(1.0) for _ in range(10_000))
    assert 0 < sum(draw(0.5) for _ in range(10_000)) < 10_000
    sampler = MessageSampler()
    # The SDK never draws a second time: an unforced root (e.g. from a malformed header) is dropped.
    assert not sampler.should_sample(None, 2**100, "push", SpanKind.SERVER).decision.is_sampled()
    assert sampler.should_sample(forced_context(), 2**100, "push", SpanKind.SERVER).decision.is_sampled()
    sampled, unsampled = (f"00-{'ab' * 16}-{'cd' * 8}-{flags}" for flags in ("01", "00"))
    assert sampler.should_sample(context_from(sampled), 2**100, "router").decision.is_sampled()
    assert not sampler.should_sample(context_from(unsampled), 2**100, "router").decision.is_sampled()


class _NoTracer(Tracer):
    """Fails the test if an unsampled push reaches the SDK at all."""

    def start_span(self, *args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("an unsampled push created a span")

    def start_as_current_span(self, *args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("an unsampled push created a span")


def test_an_unsampled_push_span_is_the_shared_no_op() -> None:
    with push_span(_NoTracer(), "/api/v1/push", f"00-{'ab' * 16}-{'cd' * 8}-01", sampled=False) as span:
        span.set_attributes({"app_id": "1"})
        assert span is INVALID_SPAN and not span.is_recording()
        assert downstream_traceparent(span) is None
    with pytest.raises(ValueError), push_span(_NoTracer(), "/api/v1/push", None, sampled=False):
        raise ValueError("the push's own error goes through untouched")


async def test_a_sampled_push_span_is_recorded_whatever_the_sdk_would_draw() -> None:
    tracing = Tracing(Settings(instance_id="inst-1", trace_sample_ratio=0.0), MemoryCache())
    assert not tracing.sampled()
    with push_span(tracing.tracer, "/api/v1/push", None) as span:  # sampled (the console's case)
        traceparent = downstream_traceparent(span)
    assert traceparent is not None and is_sampled(traceparent)
    await tracing.store.flush()
    [stored] = await tracing.store.spans(traceparent.split("-")[1])
    assert (stored.name, stored.parent_id, stored.attributes["http.route"]) == ("push", "", "/api/v1/push")
    await tracing.stop()


@pytest.fixture(params=["single", "mariadb+redis"])
async def unsampled(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(await live_env(request, tmp_path, PUSHWIRE_TRACE_SAMPLE_RATIO="0")) as server:
        yield server


async def test_ratio_zero_writes_nothing_to_the_store(unsampled: LiveServer) -> None:
    live, store = unsampled, unsampled.runtime.tracing.store
    async with await Client.connect(live.ws_url(live.token("u1"))) as c, live.pusher() as pw:
        await c.recv_until("welcome")
        accepted = await pw.push(users=["u1"], event="e", data=1)
        batch = await pw.push_batch([{"users": ["u1"], "event": "e", "data": i} for i in range(3)])
        got = await c.messages(4)
        await c.send({"type": "ack", "channel": "user.u1", "offset": got[-1]["offset"]})
        await asyncio.sleep(0.6)  # three flush intervals
    assert store.written == 0 and store.dropped == 0 and not store._spans and not store._recent and not store._values
    cache = live.runtime.backends.cache
    assert await cache.list_length(recent_key(live.app_id)) == 0
    for message_id in [accepted["id"], *(r["id"] for r in batch["results"])]:
        assert await store.trace_of(message_id) is None
    assert live.runtime.metrics.messages_in.get(live.app_id) == 4  # metrics do not depend on sampling
    assert live.runtime.metrics.messages_out.get(live.app_id) == 4


async def test_an_unsampled_push_carries_no_traceparent(unsampled: LiveServer) -> None:
    """With the bus down the relay cannot take the rows: the outbox shows what the envelopes carry."""
    live, bus = unsampled, unsampled.runtime.backends.bus
    await bus.close()  # the memory bus refuses to publish while closed
    async with live.pusher() as pw:
        accepted = await pw.push(channels=["room.q"], event="e", data=1)
        batch = await pw.push_batch([{"channels": ["room.q"], "event": "e", "data": i} for i in range(2)])
    outbox = table_of(OutboxEntry)
    async with live.runtime.backends.database.engine.connect() as conn:
        rows = await conn.execute(sa.select(outbox.c.payload).where(outbox.c.app_id == live.app_id))
        envelopes = [ENVELOPE_DECODER.decode(payload) for (payload,) in rows]
    assert {e.message.id for e in envelopes} == {accepted["id"], *(r["id"] for r in batch["results"])}
    assert [e.traceparent for e in envelopes] == [None, None, None]
    await bus.start()
