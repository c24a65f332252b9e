"""What a publish transaction stores, read back through SQLAlchemy: the rows are written on the
driver (storage/raw.py, hex literals on MySQL), so text, bytes, NULLs and times must come back
exactly as the ORM would have written them, on SQLite and MariaDB."""

from __future__ import annotations

import datetime as dt

import msgspec
import sqlalchemy as sa

from pushwire.messaging.envelope import OUTBOX_ENVELOPE_DECODER
from pushwire.messaging.epochs import EpochSeed
from pushwire.messaging.history import History
from pushwire.messaging.publish import PublishRequest, outbox_shard
from pushwire.storage.models import Channel, Message, OutboxEntry
from tests.messaging.conftest import SECRET, Services

# Multi-byte UTF-8 (2, 3 and 4 bytes), quotes, backslashes, escapes and a percent sign.
AWKWARD = '{"text":"é ü € 😀 \'single\' \\"double\\" back\\\\slash \\n \\u0000 100%","n":[1,2.5,null]}'


async def test_rows_round_trip_exactly(services: Services) -> None:
    before = dt.datetime.now(dt.UTC)
    requests = [
        PublishRequest(channels=("room.a", "room.b"), event="chat.message", data=msgspec.Raw(AWKWARD.encode())),
        PublishRequest(channels=("room.a",), event="e2", data=msgspec.Raw(b"[]"), idempotency_key="key-é-1"),
        PublishRequest(channels=("room.c",), event="e3", data=msgspec.Raw(b'"%s %(x)s ?"'), replay_of="m" * 26),
    ]
    results = await services.publisher.publish_many(services.tenant_id, services.app_id, requests)
    after = dt.datetime.now(dt.UTC)
    assert [[(d.channel, d.offset) for d in r.deliveries] for r in results] == [
        [("room.a", 1), ("room.b", 1)],
        [("room.a", 2)],
        [("room.c", 1)],
    ]
    async with services.db.session() as s:
        messages = (
            await s.scalars(
                sa.select(Message).where(Message.app_id == services.app_id).order_by(Message.channel, Message.offset)
            )
        ).all()
        outbox = (
            await s.scalars(
                sa.select(OutboxEntry).where(OutboxEntry.app_id == services.app_id).order_by(OutboxEntry.id)
            )
        ).all()
        tops = dict(
            (
                await s.execute(sa.select(Channel.name, Channel.top_offset).where(Channel.app_id == services.app_id))
            ).all()
        )
    assert tops == {"room.a": 2, "room.b": 1, "room.c": 1}
    got = [(m.channel, m.offset, m.event, m.data, m.idempotency_key, m.replay_of) for m in messages]
    assert got == [
        ("room.a", 1, "chat.message", AWKWARD, None, None),
        ("room.a", 2, "e2", "[]", "key-é-1", None),
        ("room.b", 1, "chat.message", AWKWARD, None, None),
        ("room.c", 1, "e3", '"%s %(x)s ?"', None, "m" * 26),
    ]
    assert {m.message_id for m in messages} == {r.id for r in results}
    for m in messages:
        # Stored to the microsecond, in UTC, within the call.
        assert m.created_at.tzinfo is not None and before - dt.timedelta(seconds=1) <= m.created_at <= after
    assert len({m.created_at for m in messages}) == 1
    # The outbox rows: one per delivery, in offset order per channel, each payload the full envelope.
    assert [(o.channel, o.offset) for o in outbox] == [("room.a", 1), ("room.b", 1), ("room.a", 2), ("room.c", 1)]
    for o in outbox:
        assert o.tenant_id == services.tenant_id and o.shard == outbox_shard(o.channel)
        envelope = OUTBOX_ENVELOPE_DECODER.decode(o.payload)
        assert envelope.app_id == services.app_id
        assert msgspec.json.decode(bytes(envelope.message))["offset"] == o.offset
    # History serves the stored text byte for byte.
    page = await History(services.db, EpochSeed(SECRET)).read(services.app_id, "room.a", 0, 10)
    assert [bytes(m.data).decode() for m in page.messages] == [AWKWARD, "[]"]


async def test_a_repeated_idempotency_key_is_stored_once(services: Services) -> None:
    request = PublishRequest(channels=("room.k",), event="e", data=msgspec.Raw(b"1"), idempotency_key="k-1")
    first = await services.publisher.publish(services.tenant_id, services.app_id, request)
    again = await services.publisher.publish(services.tenant_id, services.app_id, request)
    assert again.duplicate and again.id == first.id
    async with services.db.session() as s:
        count = await s.scalar(sa.select(sa.func.count()).select_from(Message).where(Message.app_id == services.app_id))
    assert count == 1
