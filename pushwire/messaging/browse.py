"""Browsing stored messages of one app for the console: filters, newest first, keyset pages by seq."""

from __future__ import annotations

import datetime as dt
import re

import msgspec
import sqlalchemy as sa

from pushwire.names import is_channel, is_event, is_user_id, personal_channel
from pushwire.storage.database import Database
from pushwire.storage.models import Message
from pushwire.tenants.service import Invalid

MAX_PAGE = 100
PREVIEW_CHARS = 120
MESSAGE_ID_RE = re.compile(r"[0-9A-Za-z]{1,32}")
# Storable on every dialect (UTC conversion of year 1 or 9999 with an offset would overflow).
MIN_TIME = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_TIME = dt.datetime(9999, 12, 30, tzinfo=dt.UTC)


def is_message_id(value: str) -> bool:
    return MESSAGE_ID_RE.fullmatch(value) is not None


class BrowseFilter(msgspec.Struct, frozen=True, kw_only=True):
    channel: str | None = None
    # A user id: their personal channel (user.<id>).
    user: str | None = None
    event: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    message_id: str | None = None
    # Keyset cursor: only rows with seq below it (the "older" page).
    before: int | None = None
    limit: int = 50

    def check(self) -> None:
        """Raise Invalid with a message for a person; nothing malformed reaches the database."""
        if self.channel is not None and not is_channel(self.channel):
            raise Invalid("channel names are 1..164 characters of A-Z a-z 0-9 _ - = @ , . ;")
        if self.user is not None and not is_user_id(self.user):
            raise Invalid("user ids are 1..128 characters of A-Z a-z 0-9 _ - = @ , . ;")
        if self.event is not None and not is_event(self.event):
            raise Invalid("events are 1..64 characters of A-Z a-z 0-9 _ . : -")
        if self.message_id is not None and not is_message_id(self.message_id):
            raise Invalid("message ids are up to 32 letters and digits")
        for when in (self.since, self.until):
            if when is not None and when.tzinfo is None:
                raise Invalid("times must carry a time zone")
            if when is not None and not MIN_TIME <= when <= MAX_TIME:
                raise Invalid("times must be between the years 1970 and 9999")
        if self.since is not None and self.until is not None and self.until < self.since:
            raise Invalid("the end of the time range is before its start")
        if not 1 <= self.limit <= MAX_PAGE:
            raise Invalid(f"page size must be between 1 and {MAX_PAGE}")
        if self.before is not None and not 1 <= self.before < 2**63:
            raise Invalid("bad page cursor")

    @property
    def channels(self) -> set[str]:
        """The channel constraints (channel and user's personal channel), ANDed."""
        out = {self.channel} if self.channel else set()
        if self.user:
            out.add(personal_channel(self.user))
        return out


class MessageRow(msgspec.Struct, frozen=True):
    seq: int
    offset: int
    channel: str
    event: str
    message_id: str
    created_at: dt.datetime
    size: int
    replay_of: str | None
    preview: str


class BrowsePage(msgspec.Struct, frozen=True):
    rows: list[MessageRow]
    # Pass as `before` for the next (older) page; None when this page is the last.
    older: int | None


class StoredMessage(msgspec.Struct, frozen=True):
    """One delivery with its data exactly as stored (the detail page and replay read this)."""

    seq: int
    message_id: str
    channel: str
    offset: int
    event: str
    data: str
    replay_of: str | None
    created_at: dt.datetime


def _preview(data: str) -> str:
    return data if len(data) <= PREVIEW_CHARS else data[: PREVIEW_CHARS - 1] + "…"


def _row(r: Message) -> MessageRow:
    return MessageRow(
        seq=r.seq,
        offset=r.offset,
        channel=r.channel,
        event=r.event,
        message_id=r.message_id,
        created_at=r.created_at,
        size=len(r.data.encode()),
        replay_of=r.replay_of,
        preview=_preview(r.data),
    )


def stored(row: Message) -> StoredMessage:
    return StoredMessage(
        seq=row.seq,
        message_id=row.message_id,
        channel=row.channel,
        offset=row.offset,
        event=row.event,
        data=row.data,
        replay_of=row.replay_of,
        created_at=row.created_at,
    )


class MessageBrowser:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def search(self, app_id: str, query: BrowseFilter) -> BrowsePage:
        query.check()
        q = sa.select(Message).where(Message.app_id == app_id)
        channels = query.channels
        if len(channels) > 1:  # a channel and a user whose personal channel it is not
            return BrowsePage(rows=[], older=None)
        if channels:
            q = q.where(Message.channel == next(iter(channels)))
        if query.event:
            q = q.where(Message.event == query.event)
        if query.message_id:
            q = q.where(Message.message_id == query.message_id)
        if query.since is not None:
            q = q.where(Message.created_at >= query.since)
        if query.until is not None:
            q = q.where(Message.created_at <= query.until)
        if query.before is not None:
            q = q.where(Message.seq < query.before)
        # Within one channel offsets grow with seq (assigned under the channel's row lock), so the
        # (app, channel, offset) index serves the order; elsewhere the primary key does.
        order = [Message.offset.desc(), Message.seq.desc()] if channels else [Message.seq.desc()]
        q = q.order_by(*order).limit(query.limit + 1)
        async with self.db.session() as s:
            found = list((await s.scalars(q)).all())
        more = len(found) > query.limit
        found = found[: query.limit]
        rows = [_row(r) for r in found]
        return BrowsePage(rows=rows, older=rows[-1].seq if more and rows else None)

    async def deliveries(self, app_id: str, message_id: str) -> list[StoredMessage]:
        """Every delivery of one message id in this app (one per channel it went to), oldest first."""
        if not is_message_id(message_id):
            return []
        async with self.db.session() as s:
            found = (
                await s.scalars(
                    sa.select(Message)
                    .where(Message.app_id == app_id, Message.message_id == message_id)
                    .order_by(Message.seq)
                )
            ).all()
        return [stored(r) for r in found]

    async def replays_of(self, app_id: str, original: StoredMessage, limit: int = 20) -> list[MessageRow]:
        """Messages replayed from this one, newest first; replays are never older than the original."""
        async with self.db.session() as s:
            found = (
                await s.scalars(
                    sa.select(Message)
                    .where(
                        Message.app_id == app_id,
                        Message.created_at >= original.created_at,
                        Message.replay_of == original.message_id,
                    )
                    .order_by(Message.seq.desc())
                    .limit(limit)
                )
            ).all()
        return [_row(r) for r in found]
