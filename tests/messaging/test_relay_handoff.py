"""The relay sends the rows its Publisher hands it without polling, and keeps each channel's order
when those rows meet rows only a poll finds (another instance's), on both backend sets."""

from __future__ import annotations

import asyncio
import math

import msgspec
import sqlalchemy as sa
from sqlalchemy import event

from pushwire.messaging.epochs import EpochSeed
from pushwire.messaging.hot_history import HotHistory, hot_key, split_entry
from pushwire.messaging.publish import Publisher, PublishRequest, outbox_shard
from pushwire.messaging.relay import OUTBOX_SHARDS, OutboxRelay
from pushwire.runtime import Runtime
from pushwire.storage.dialect import table_of
from pushwire.storage.models import OutboxEntry
from tests.live import LiveServer

SECRET = "test-secret-key-0123456789"  # the live server's: the other publisher derives the same epochs


def _req(channel: str, i: int) -> PublishRequest:
    return PublishRequest(channels=(channel,), event="e", data=msgspec.Raw(str(i).encode()))


async def _no_polls(rt: Runtime) -> None:
    """Until the relay holds every shard and has polled them once; then no poll comes unless asked."""
    relay = rt.relay
    async with asyncio.timeout(15):
        while len(relay.shards) < OUTBOX_SHARDS or relay._due:
            await asyncio.sleep(0.02)
    relay._next_poll = math.inf  # the periodic safety net, off for this test


async def _outbox(rt: Runtime, app_id: str) -> int:
    outbox = table_of(OutboxEntry)
    async with rt.backends.database.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(outbox).where(outbox.c.app_id == app_id)
        return int((await conn.execute(query)).scalar() or 0)


async def _hot_offsets(rt: Runtime, app_id: str, channel: str) -> list[int]:
    """The hot history's offsets, newest first: the order the relay sent them in."""
    return [split_entry(raw)[0] for raw in await rt.backends.cache.list_range(hot_key(app_id, channel), 0, -1)]


async def _drained(rt: Runtime, app_id: str, handed: int | None = None) -> None:
    """Until the outbox holds none of the app's rows and, given `handed`, the relay has counted that
    many handed-off rows: it counts them only after its DELETE commits, so an empty outbox alone
    can be seen a moment before the count moves."""
    async with asyncio.timeout(10):
        while await _outbox(rt, app_id) or (handed is not None and rt.relay.handed_sent < handed):
            await asyncio.sleep(0.02)


async def test_handed_off_rows_are_sent_without_a_poll_and_deleted_in_one_statement(live: LiveServer) -> None:
    rt = live.runtime
    await _no_polls(rt)
    deletes: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("DELETE FROM OUTBOX"):
            deletes.append(statement)

    engine = rt.backends.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        before = rt.relay.handed_sent
        reqs = [_req(ch, i) for i in range(3) for ch in ("room.a", "room.b")]
        await rt.publisher.publish_many(live.tenant_id, live.app_id, reqs)
        await _drained(rt, live.app_id, handed=before + 6)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert rt.relay.handed_sent - before == 6
    assert len(deletes) == 1  # one batch: one DELETE for its six rows
    assert await _hot_offsets(rt, live.app_id, "room.a") == [3, 2, 1]
    assert await _hot_offsets(rt, live.app_id, "room.b") == [3, 2, 1]


async def test_a_channel_keeps_its_order_when_handed_off_rows_meet_polled_ones(live: LiveServer) -> None:
    rt = live.runtime
    await _no_polls(rt)
    channel = "room.mixed"
    # Another instance's commits: in the outbox, handed to no relay here.
    other = Publisher(rt.backends.database, EpochSeed(SECRET))
    await other.publish_many(live.tenant_id, live.app_id, [_req(channel, i) for i in (1, 2)])
    before = rt.relay.handed_sent
    # Offsets 3 and 4, handed off: 1 and 2 are older and unsent, so the shard is polled, in id order.
    await rt.publisher.publish_many(live.tenant_id, live.app_id, [_req(channel, i) for i in (3, 4)])
    await _drained(rt, live.app_id)
    assert await _hot_offsets(rt, live.app_id, channel) == [4, 3, 2, 1]
    assert rt.relay.handed_sent == before
    assert rt.relay._due.isdisjoint({outbox_shard(channel)})
    # The relay sent offset 4 itself, so offset 5 goes out as handed off.
    await rt.publisher.publish(live.tenant_id, live.app_id, _req(channel, 5))
    await _drained(rt, live.app_id, handed=before + 1)
    assert await _hot_offsets(rt, live.app_id, channel) == [5, 4, 3, 2, 1]
    assert rt.relay.handed_sent == before + 1


async def test_a_relay_holding_no_shard_keeps_no_handed_rows_and_never_blocks_the_loop(live: LiveServer) -> None:
    """A second instance's relay (every shard held by the first) is handed its Publisher's rows:
    they are left to the shard holder's poll, and its loop waits instead of spinning on them (it
    used to spin until the next lock check, stalling every request for ~1.6 s)."""
    rt = live.runtime
    await _no_polls(rt)
    rt.relay._next_poll = 0.0  # the holder polls: it sends the second instance's rows
    be = rt.backends
    wakeup = asyncio.Event()
    second = OutboxRelay(be.database, be.bus, HotHistory(be.cache), be.registry, wakeup, rt.settings.kafka_topic_prefix)
    publisher = Publisher(be.database, EpochSeed(SECRET), handoff=second.hand_off)
    await second.start()
    gaps: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            gaps.append(loop.time() - last)
            last = loop.time()

    tick = asyncio.create_task(ticker())
    try:
        await asyncio.sleep(0.2)
        assert second.shards == []
        await publisher.publish_many(live.tenant_id, live.app_id, [_req("room.other", i) for i in (1, 2)])
        assert second._handed == []
        await asyncio.sleep(0.5)
        assert second._handed == []
        rt.relay._next_poll = 0.0
        rt.relay.wakeup.set()
        await _drained(rt, live.app_id)
        assert await _hot_offsets(rt, live.app_id, "room.other") == [2, 1]
    finally:
        tick.cancel()
        await second.stop()
    assert max(gaps) < 0.5, f"event loop stalled for {max(gaps):.2f} s"
