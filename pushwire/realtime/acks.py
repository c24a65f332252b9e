"""Acknowledged offsets per (app, user, channel): durable in the database, read through the cache."""

from __future__ import annotations

import sqlalchemy as sa

from pushwire.cache.base import Cache
from pushwire.errors import BackendUnavailable
from pushwire.storage.database import Database
from pushwire.storage.dialect import insert_ignore, rowcount, table_of, utcnow
from pushwire.storage.models import Ack

ACK_CACHE_TTL = 3600.0


def _key(app_id: str, user_id: str, channel: str) -> str:
    return f"ack:{app_id}:{user_id}:{channel}"


class AckStore:
    def __init__(self, db: Database, cache: Cache) -> None:
        self.db = db
        self.cache = cache

    async def get(self, app_id: str, user_id: str, channel: str) -> int:
        try:
            cached = await self.cache.get(_key(app_id, user_id, channel))
        except BackendUnavailable:
            cached = None
        if cached is not None:
            return int(cached)
        async with self.db.session() as s:
            offset = await s.scalar(
                sa.select(Ack.offset).where(Ack.app_id == app_id, Ack.user_id == user_id, Ack.channel == channel)
            )
        value = int(offset or 0)
        # Only if absent: an ack stored (and cached) since the read above must not be overwritten
        # by the older value read here.
        try:
            await self.cache.set_if_absent(_key(app_id, user_id, channel), str(value).encode(), ttl=ACK_CACHE_TTL)
        except BackendUnavailable:
            pass  # the database has it
        return value

    async def advance(self, app_id: str, user_id: str, channel: str, offset: int) -> int:
        """Acks are cumulative: the stored offset only moves forward. Returns the stored offset."""
        now = utcnow()
        async with self.db.session() as s, s.begin():
            moved = await s.execute(
                sa.update(Ack)
                .where(Ack.app_id == app_id, Ack.user_id == user_id, Ack.channel == channel, Ack.offset < offset)
                .values(offset=offset, updated_at=now)
            )
            if rowcount(moved) == 0:
                await s.execute(
                    insert_ignore(table_of(Ack), self.db.dialect).values(
                        app_id=app_id, user_id=user_id, channel=channel, offset=offset, updated_at=now
                    )
                )
            stored = await s.scalar(
                sa.select(Ack.offset).where(Ack.app_id == app_id, Ack.user_id == user_id, Ack.channel == channel)
            )
        value = int(stored or offset)
        await self._cache(app_id, user_id, channel, value)
        return value

    async def _cache(self, app_id: str, user_id: str, channel: str, value: int) -> None:
        try:
            await self.cache.set(_key(app_id, user_id, channel), str(value).encode(), ttl=ACK_CACHE_TTL)
        except BackendUnavailable:
            pass  # the database has it
