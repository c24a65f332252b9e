"""Replayer on SQLite and MariaDB: new ids and offsets, replay_of, exact data, ranges and the cap, scoping."""

from __future__ import annotations

import msgspec
import pytest
import sqlalchemy as sa

from pushwire.messaging.publish import PublishRequest
from pushwire.messaging.replay import MAX_RANGE, ReplayRequest, ReplayTarget
from pushwire.storage.models import Message
from pushwire.tenants.service import Invalid, NotFound
from tests.messaging.conftest import Services


async def stored(s: Services, channel: str) -> list[tuple[int, str, str | None, str]]:
    async with s.db.session() as session:
        rows = (
            await session.scalars(
                sa.select(Message)
                .where(Message.app_id == s.app_id, Message.channel == channel)
                .order_by(Message.offset)
            )
        ).all()
    return [(r.offset, r.message_id, r.replay_of, r.data) for r in rows]


async def test_one_message_to_its_own_channels_another_channel_and_a_user(services: Services) -> None:
    s = services
    raw = b'{"a" :1 , "b": "\\u00e9"}'
    first = await s.publisher.publish(
        s.tenant_id, s.app_id, PublishRequest(channels=("room.a", "room.b"), event="ev", data=msgspec.Raw(raw))
    )
    own = await s.replayer.replay(s.tenant_id, s.app_id, ReplayRequest(message_id=first.id))
    assert [(i.original_channel, i.channel, i.offset) for i in own.items] == [
        ("room.a", "room.a", 2),
        ("room.b", "room.b", 2),
    ]
    assert len({i.id for i in own.items}) == 1 and own.items[0].id != first.id
    other = await s.replayer.replay(
        s.tenant_id, s.app_id, ReplayRequest(message_id=first.id, target=ReplayTarget("channel", "room.b"))
    )
    user = await s.replayer.replay(
        s.tenant_id, s.app_id, ReplayRequest(message_id=first.id, target=ReplayTarget("user", "u1"))
    )
    assert [(i.channel, i.offset) for i in other.items + user.items] == [("room.b", 3), ("user.u1", 1)]
    text = raw.decode()
    assert await stored(s, "room.b") == [
        (1, first.id, None, text),
        (2, own.items[0].id, first.id, text),
        (3, other.items[0].id, first.id, text),
    ]
    assert await stored(s, "user.u1") == [(1, user.items[0].id, first.id, text)]
    bad = ReplayTarget("nope", "x")  # type: ignore[arg-type]
    for target in (ReplayTarget("channel", "bad name"), ReplayTarget("user", ""), bad):
        with pytest.raises(Invalid):
            await s.replayer.replay(s.tenant_id, s.app_id, ReplayRequest(message_id=first.id, target=target))
    assert len(await stored(s, "room.b")) == 3


async def test_another_apps_message_or_channel_is_not_found(services: Services) -> None:
    s = services
    theirs = await s.publisher.publish(
        s.other_tenant, s.other_app, PublishRequest(channels=("room.x",), event="ev", data=msgspec.Raw(b"1"))
    )
    with pytest.raises(NotFound):
        await s.replayer.replay(s.tenant_id, s.app_id, ReplayRequest(message_id=theirs.id))
    with pytest.raises(Invalid, match="no stored messages"):
        await s.replayer.replay(s.tenant_id, s.app_id, ReplayRequest(channel="room.x", from_offset=1, to_offset=1))
    assert await stored(s, "room.x") == []


async def test_a_range_in_order_up_to_the_cap_and_not_one_more(services: Services) -> None:
    s = services
    reqs = [
        PublishRequest(channels=("room.r",), event="ev", data=msgspec.Raw(str(i).encode())) for i in range(MAX_RANGE)
    ]
    originals = [r.id for r in await s.publisher.publish_many(s.tenant_id, s.app_id, reqs)]
    with pytest.raises(Invalid, match="at most 1,000"):
        await s.replayer.replay(
            s.tenant_id, s.app_id, ReplayRequest(channel="room.r", from_offset=1, to_offset=MAX_RANGE + 1)
        )
    with pytest.raises(Invalid, match="before its first"):
        await s.replayer.replay(s.tenant_id, s.app_id, ReplayRequest(channel="room.r", from_offset=3, to_offset=2))
    assert await stored(s, "room.copy") == [] and len(await stored(s, "room.r")) == MAX_RANGE
    done = await s.replayer.replay(
        s.tenant_id,
        s.app_id,
        ReplayRequest(
            channel="room.r", from_offset=1, to_offset=MAX_RANGE, target=ReplayTarget("channel", "room.copy")
        ),
    )
    assert [(i.original_offset, i.offset) for i in done.items] == [(o, o) for o in range(1, MAX_RANGE + 1)]
    copies = await stored(s, "room.copy")
    assert [(o, of, d) for o, _, of, d in copies] == [(i + 1, originals[i], str(i)) for i in range(MAX_RANGE)]
    assert len({m for _, m, _, _ in copies}) == MAX_RANGE
