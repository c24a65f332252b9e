"""PUSHWIRE_TRACE_SAMPLE_RATIO: parsing, ratio 0 writes nothing, console pushes are forced.

(A caller's traceparent does not decide: tests/tracing/test_caller_context.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry.trace import SpanKind

from pushwire.errors import SettingsError
from pushwire.settings import load_settings
from pushwire.tracing.provider import MessageSampler, forced_context
from pushwire.tracing.store import recent_key
from tests.live import Client, LiveServer, live_server
from tests.tracing.conftest import live_env


def test_ratio_setting(tmp_path: Path) -> None:
    env = {"PUSHWIRE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/p.db"}
    assert load_settings(env).trace_sample_ratio == 1.0
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


def test_sampler_ratio_zero_samples_only_forced_or_sampled_parents() -> None:
    sampler = MessageSampler(0.0)
    assert not sampler.should_sample(None, 2**100, "push", SpanKind.SERVER).decision.is_sampled()
    assert sampler.should_sample(forced_context(), 2**100, "push", SpanKind.SERVER).decision.is_sampled()
    assert MessageSampler(1.0).should_sample(None, 2**100, "push").decision.is_sampled()


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
