"""History reads from the database: the source of truth behind recovery and the history API."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import sqlalchemy as sa

from pushwire.errors import BackendUnavailable
from pushwire.messaging.envelope import ClientMessage, rfc3339
from pushwire.messaging.epochs import EpochSeed
from pushwire.storage import raw
from pushwire.storage.database import Database
from pushwire.storage.models import Message


class ChannelState(msgspec.Struct, frozen=True):
    epoch: str
    top: int


class HistoryPage(msgspec.Struct, frozen=True):
    channel: str
    epoch: str
    top: int
    messages: list[ClientMessage]


def to_client_message(row: Message, epoch: str) -> ClientMessage:
    return ClientMessage(
        channel=row.channel,
        offset=row.offset,
        epoch=epoch,
        id=row.message_id,
        event=row.event,
        data=msgspec.Raw(row.data.encode()),
        ts=rfc3339(row.created_at),
    )


_STATE_COLUMNS = ("name", "epoch", "top_offset")


class History:
    def __init__(self, db: Database, epochs: EpochSeed) -> None:
        self.db = db
        self.epochs = epochs

    async def states(self, app_id: str, channels: Sequence[str]) -> dict[str, ChannelState]:
        """Epoch and top offset per channel; a channel never published to has top 0."""
        if not channels:
            return {}
        # On the driver (storage/raw.py), past SQLAlchemy's execution layer: every connect waits on
        # this read, and SQLAlchemy's statement handling cost more than the query itself.
        names = list(channels)
        async with self.db.engine.connect() as conn:
            sql = raw.select_in_sql(conn.dialect, "channels", _STATE_COLUMNS, "app_id", "name", len(names))
            try:
                rows = await raw.execute(conn, sql, [app_id, *names], fetch=True)
            except raw.DRIVER_ERRORS as exc:
                raise BackendUnavailable("database", str(exc).splitlines()[0][:200]) from None
        found = {name: ChannelState(epoch=epoch, top=int(top)) for name, epoch, top in rows}
        initial = self.epochs.initial
        return {ch: found.get(ch) or ChannelState(epoch=initial(app_id, ch), top=0) for ch in channels}

    async def read(self, app_id: str, channel: str, after: int, limit: int) -> HistoryPage:
        """Messages with offset > after, oldest first, at most `limit`."""
        state = (await self.states(app_id, [channel]))[channel]
        async with self.db.session() as s:
            rows = (
                await s.scalars(
                    sa.select(Message)
                    .where(Message.app_id == app_id, Message.channel == channel, Message.offset > after)
                    .order_by(Message.offset)
                    .limit(limit)
                )
            ).all()
        return HistoryPage(
            channel=channel,
            epoch=state.epoch,
            top=state.top,
            messages=[to_client_message(r, state.epoch) for r in rows],
        )
