"""Capped hub.deliver spans, ERROR status on slow-reader closes and on bus errors in the relay."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa

from pushwire.bus.base import BusRecord
from pushwire.cache.memory import MemoryCache
from pushwire.messaging.envelope import ENCODER, BusEnvelope, ClientMessage
from pushwire.realtime.hub import Hub
from pushwire.realtime.session import Session
from pushwire.realtime.tokens import ClientIdentity
from pushwire.sdk import PushwireError
from pushwire.settings import Settings
from pushwire.storage.migrate import upgrade
from pushwire.tracing.delivery import DELIVER_SPANS, RouteTracer
from pushwire.tracing.provider import Tracing
from pushwire.tracing.views import TraceFilter, recent_summaries
from tests.live import LiveServer, live_server
from tests.tracing.conftest import by_name


class Transport:
    kind = "ws"

    def __init__(self, stuck: bool = False) -> None:
        self.stuck = stuck
        self.sent: list[str] = []

    async def send_frames(self, frames: list[str]) -> None:
        if self.stuck:
            await asyncio.Event().wait()  # a peer that never reads
        self.sent.extend(frames)

    async def close(self, code: int, reason: str) -> None:
        return None


def _session(i: int, transport: Transport, queue_bytes: int = 1 << 20) -> Session:
    identity = ClientIdentity(
        app_id="1",
        tenant_id="t",
        user_id=f"u{i}",
        channels=("room.*",),
        info=None,
        expires_at=0.0,
        max_connections=10,
        max_connections_per_user=10,
        allowed_origins=(),
    )
    return Session(f"s{i}", identity, transport, queue_bytes)


def _record(offset: int, data: str) -> tuple[BusEnvelope, BusRecord, bytes]:
    m = ClientMessage(
        channel="room.a",
        offset=offset,
        epoch="e",
        id=f"M{offset}",
        event="e",
        data=msgspec.Raw(ENCODER.encode(data)),
        ts="2026-01-01T00:00:00.000Z",
    )
    env = BusEnvelope(tenant_id="t", app_id="1", message=m)
    tp = f"00-{offset:032x}-{offset:016x}-01".encode()
    return env, BusRecord("p.t", 0, offset, b"room.a", ENCODER.encode(env), (("traceparent", tp),)), tp


async def _setup(sessions: list[Session]) -> tuple[Hub, Tracing, RouteTracer]:
    tracing = Tracing(Settings(instance_id="inst-1"), MemoryCache())
    hub = Hub()
    for s in sessions:
        hub.attach(s)
        hub.subscribe(s, "room.a")
        s.finish_subscription("room.a", 0, [], None)
        s.start()
    return hub, tracing, RouteTracer(tracing.tracer, tracing.acks, "inst-1")


async def test_broadcast_to_many_connections_is_capped() -> None:
    sessions = [_session(i, Transport()) for i in range(DELIVER_SPANS + 15)]
    hub, tracing, router = await _setup(sessions)
    env, record, tp = _record(1, "x")
    assert router.deliver(hub, env, record, tp, ENCODER.encode(env.message).decode(), time.time_ns()) == len(sessions)
    await asyncio.sleep(0.05)  # the writers send; each watched span ends after its frame went out
    await tracing.store.flush()
    named = by_name(await tracing.store.spans(f"{1:032x}"))
    assert len(named["hub.deliver"]) == DELIVER_SPANS and not any(s.error for s in named["hub.deliver"])
    assert named["router"][0].attributes["deliveries.total"] == len(sessions)
    assert all(len(s.transport.sent) == 1 for s in sessions)  # type: ignore[attr-defined]
    for s in sessions:
        s.close_soon(1000, "bye")
    await tracing.stop()


async def test_slow_reader_close_sets_error() -> None:
    slow = _session(0, Transport(stuck=True), queue_bytes=300)
    hub, tracing, router = await _setup([slow])
    env, record, tp = _record(1, "small")
    router.deliver(hub, env, record, tp, ENCODER.encode(env.message).decode(), time.time_ns())
    await asyncio.sleep(0.02)  # the writer takes frame 1 and blocks on the peer
    env2, record2, tp2 = _record(2, "y" * 400)
    router.deliver(hub, env2, record2, tp2, ENCODER.encode(env2.message).decode(), time.time_ns())
    assert slow.closing is not None and slow.closing[0] == 4008
    await tracing.store.flush()
    for trace in (f"{1:032x}", f"{2:032x}"):
        [deliver] = by_name(await tracing.store.spans(trace))["hub.deliver"]
        assert deliver.error and "closed" in deliver.status_message, deliver
    await tracing.stop()


async def test_bus_error_marks_the_relay_spans_failed(live: LiveServer) -> None:
    bus, store = live.runtime.backends.bus, live.runtime.tracing.store
    await bus.close()  # the memory bus refuses to publish while closed
    async with live.pusher() as pw:
        accepted = await pw.push(channels=["room.f"], event="e", data=1)
    async with asyncio.timeout(10):
        while True:
            trace_id = await store.trace_of(accepted["id"])
            spans = await store.spans(trace_id) if trace_id else []
            if any(s.name == "outbox.relay" for s in spans):
                break
            await asyncio.sleep(0.1)
    named = by_name(spans)
    assert named["outbox.relay"][0].error and named["kafka.produce"][0].error
    assert "BackendUnavailable" in named["kafka.produce"][0].status_message
    [entry] = await store.recent(live.app_id)
    rows, _ = await recent_summaries(store, live.app_id, TraceFilter(failed=True))
    assert [r.message_id for r in rows] == [entry.message_id] == [accepted["id"]]
    await bus.start()


async def test_publish_error_is_a_failed_trace_listed_by_trace_id(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/broken.db"
    await asyncio.to_thread(upgrade, url)
    env = {"PUSHWIRE_SECRET_KEY": "test-secret-key-0123456789", "PUSHWIRE_DATABASE_URL": url}
    async with live_server({**env, "PUSHWIRE_TRACE_SAMPLE_RATIO": "1"}) as live:
        async with live.runtime.backends.database.engine.begin() as conn:  # the insert of messages fails
            await conn.execute(sa.text("ALTER TABLE messages RENAME TO messages_gone"))
        async with live.pusher() as pw:
            with pytest.raises(PushwireError):
                await pw.push(channels=["room.f"], event="boom", data=1)
        store = live.runtime.tracing.store
        await store.flush()
        [entry] = await store.recent(live.app_id)
        assert entry.failed and entry.message_id == "" and entry.event == "boom"
        named = by_name(await store.spans(entry.trace_id))
        assert named["push"][0].error and named["db.commit"][0].error
        assert "messages" in named["db.commit"][0].status_message
        rows, _ = await recent_summaries(store, live.app_id, TraceFilter(failed=True))
        assert [(r.key, r.failed) for r in rows] == [(entry.trace_id, True)]
