"""Replaying stored messages: each is published anew (new id, new offset) marked `replay_of` the original.

It goes through the Publisher, so a replay is durable and reaches connected clients exactly as a
push does (one transaction with its outbox rows). The caller wakes the relay afterwards.
"""

from __future__ import annotations

from typing import Literal

import msgspec
import sqlalchemy as sa

from pushwire.messaging.browse import MessageBrowser, StoredMessage, is_message_id, stored
from pushwire.messaging.publish import Publisher, PublishRequest
from pushwire.names import is_channel, is_user_id, personal_channel
from pushwire.storage.models import Message
from pushwire.tenants.service import Invalid, NotFound

MAX_RANGE = 1000

TargetKind = Literal["own", "channel", "user"]


class ReplayTarget(msgspec.Struct, frozen=True):
    # own: the channel(s) the message was delivered to; channel: `name`; user: `name`'s personal channel.
    kind: TargetKind = "own"
    name: str = ""

    def channel(self) -> str | None:
        """The target channel, None for "own"; Invalid for a bad name."""
        if self.kind == "own":
            return None
        if self.kind == "channel":
            if not is_channel(self.name):
                raise Invalid("target channel names are 1..164 characters of A-Z a-z 0-9 _ - = @ , . ;")
            return self.name
        if self.kind == "user":
            if not is_user_id(self.name):
                raise Invalid("target user ids are 1..128 characters of A-Z a-z 0-9 _ - = @ , . ;")
            return personal_channel(self.name)
        raise Invalid("replay to the message's own channel, another channel or a user")


class ReplayRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One message (`message_id`) or a range of one channel (`channel`, `from_offset`..`to_offset`)."""

    target: ReplayTarget = ReplayTarget()
    message_id: str | None = None
    channel: str | None = None
    from_offset: int | None = None
    to_offset: int | None = None

    @property
    def is_range(self) -> bool:
        return self.message_id is None


class Replayed(msgspec.Struct, frozen=True):
    original_id: str
    original_channel: str
    original_offset: int
    id: str
    channel: str
    offset: int
    epoch: str


class ReplayResult(msgspec.Struct, frozen=True):
    items: list[Replayed]


class Replayer:
    def __init__(self, publisher: Publisher, browser: MessageBrowser) -> None:
        self.publisher = publisher
        self.browser = browser

    async def replay(self, tenant_id: str, app_id: str, request: ReplayRequest) -> ReplayResult:
        """Validate everything before publishing anything: a refused replay publishes nothing."""
        target = request.target.channel()
        if request.is_range:
            sources = await self._range(app_id, request)
            # One publish per original: each gets its own new id, in offset order.
            groups = [[m] for m in sources]
        else:
            sources = await self._one(app_id, request.message_id or "")
            groups = [sources]  # one message (maybe several channels): one new id
        publishes = []
        for group in groups:
            first = group[0]
            channels = (target,) if target else tuple(dict.fromkeys(m.channel for m in group))
            publishes.append(
                PublishRequest(
                    channels=channels,
                    event=first.event,
                    data=msgspec.Raw(first.data.encode()),
                    replay_of=first.message_id,
                )
            )
        results = await self.publisher.publish_many(tenant_id, app_id, publishes)
        items = []
        for group, result in zip(groups, results, strict=True):
            for i, d in enumerate(result.deliveries):
                # With a target, a delivery comes from the group's first original; "own" keeps the pairs.
                src = group[i] if not target else group[0]
                items.append(
                    Replayed(
                        original_id=src.message_id,
                        original_channel=src.channel,
                        original_offset=src.offset,
                        id=result.id,
                        channel=d.channel,
                        offset=d.offset,
                        epoch=d.epoch,
                    )
                )
        return ReplayResult(items=items)

    async def _one(self, app_id: str, message_id: str) -> list[StoredMessage]:
        if not is_message_id(message_id):
            raise Invalid("message ids are up to 32 letters and digits")
        found = await self.browser.deliveries(app_id, message_id)
        if not found:
            raise NotFound(message_id)
        return found

    async def _range(self, app_id: str, request: ReplayRequest) -> list[StoredMessage]:
        channel, low, high = request.channel or "", request.from_offset, request.to_offset
        if not is_channel(channel):
            raise Invalid("give the range's channel: 1..164 characters of A-Z a-z 0-9 _ - = @ , . ;")
        if low is None or high is None or low < 1 or high < 1:
            raise Invalid("give the range's first and last offsets (whole numbers from 1)")
        if high < low:
            raise Invalid("the range's last offset is before its first")
        if high - low + 1 > MAX_RANGE:
            raise Invalid(
                f"a replay covers at most {MAX_RANGE:,} messages; offsets {low}..{high} are "
                f"{high - low + 1:,}: replay it in smaller ranges"
            )
        async with self.browser.db.session() as s:
            rows = (
                await s.scalars(
                    sa.select(Message)
                    .where(
                        Message.app_id == app_id,
                        Message.channel == channel,
                        Message.offset >= low,
                        Message.offset <= high,
                    )
                    .order_by(Message.offset)
                )
            ).all()
        if not rows:
            raise Invalid(f"channel {channel} has no stored messages at offsets {low}..{high}")
        return [stored(r) for r in rows]
