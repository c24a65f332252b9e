"""The route table in the database, with each user's last-seen time kept in the cache.

Routes are durable so presence is right across instances; last_seen outlives the routes (it is
written when the last connection goes) and lives in the cache, since losing it loses no message.

WebSocket routes live as long as their connection (refreshed by the instance heartbeat). A
polling route (long-poll, SSE) is connected only while one of its requests is open — the
serving instance refreshes it every POLL_REFRESH seconds meanwhile (realtime/open_polls.py) —
and for POLL_GRACE seconds after: past that it counts for nothing (limits, presence) and the
sweep deletes it. The instance heartbeat never refreshes polling routes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from pushwire.cache.base import Cache
from pushwire.messaging.envelope import rfc3339
from pushwire.storage.database import Database
from pushwire.storage.dialect import rowcount, utcnow
from pushwire.storage.models import PresenceRoute

LAST_SEEN_TTL = 30 * 86_400
POLLING = ("longpoll", "sse")
# A polling client stays connected this long (s) after its last request ended (docs/client-protocol.md).
POLL_GRACE = 10.0
# How often an instance refreshes the routes of its open polls: well within the grace.
POLL_REFRESH = 3.0


def current_routes(now: dt.datetime) -> sa.ColumnElement[bool]:
    """Routes that count: every WebSocket route, and polling routes within their grace."""
    return sa.or_(
        PresenceRoute.transport.not_in(POLLING),
        PresenceRoute.last_seen >= now - dt.timedelta(seconds=POLL_GRACE),
    )


class Route(msgspec.Struct, frozen=True):
    session_id: str
    app_id: str
    user_id: str
    instance_id: str
    transport: str
    since: str
    last_seen: str


def _expired(r: PresenceRoute, now: dt.datetime) -> bool:
    """The Python side of `current_routes`, for rows already read."""
    return r.transport in POLLING and r.last_seen < now - dt.timedelta(seconds=POLL_GRACE)


class UserPresence(msgspec.Struct, frozen=True):
    user_id: str
    routes: list[Route]
    last_seen: str | None

    @property
    def online(self) -> bool:
        return bool(self.routes)


def _route(r: PresenceRoute) -> Route:
    return Route(
        session_id=r.session_id,
        app_id=r.app_id,
        user_id=r.user_id,
        instance_id=r.instance_id,
        transport=r.transport,
        since=rfc3339(r.since),
        last_seen=rfc3339(r.last_seen),
    )


class PresenceStore:
    def __init__(self, db: Database, cache: Cache) -> None:
        self.db = db
        self.cache = cache

    async def add(self, session_id: str, app_id: str, user_id: str, instance_id: str, transport: str) -> None:
        now = utcnow()
        async with self.db.session() as s:
            s.add(
                PresenceRoute(
                    session_id=session_id,
                    app_id=app_id,
                    user_id=user_id,
                    instance_id=instance_id,
                    transport=transport,
                    since=now,
                    last_seen=now,
                )
            )
            await s.commit()

    async def refresh_poll(self, session_id: str, app_id: str, instance_id: str) -> bool:
        """A continuing poll: True when its session still holds a current route (now refreshed)."""
        now = utcnow()
        async with self.db.session() as s:
            moved = await s.execute(
                sa.update(PresenceRoute)
                .where(
                    PresenceRoute.session_id == session_id,
                    PresenceRoute.app_id == app_id,
                    PresenceRoute.transport.in_(POLLING),
                    PresenceRoute.last_seen >= now - dt.timedelta(seconds=POLL_GRACE),
                )
                .values(last_seen=now, instance_id=instance_id)
            )
            await s.commit()
        return rowcount(moved) > 0

    async def upsert(self, session_id: str, app_id: str, user_id: str, instance_id: str, transport: str) -> None:
        """Polling transports: one route per poll session (a new one, or one back after its grace)."""
        async with self.db.session() as s:
            moved = await s.execute(
                sa.update(PresenceRoute)
                .where(PresenceRoute.session_id == session_id, PresenceRoute.app_id == app_id)
                .values(last_seen=utcnow(), instance_id=instance_id)
            )
            await s.commit()
        if rowcount(moved) == 0:
            try:
                await self.add(session_id, app_id, user_id, instance_id, transport)
            except IntegrityError:
                pass  # a concurrent poll of the same session added it

    async def mark_left(self, app_id: str, user_id: str) -> None:
        """The user's last-seen time; written before a route is deleted: a reader that sees the
        route gone must also see when the user left."""
        await self.cache.set(f"lastseen:{app_id}:{user_id}", rfc3339(utcnow()).encode(), ttl=LAST_SEEN_TTL)

    async def remove(self, session_id: str, app_id: str, user_id: str) -> None:
        await self.mark_left(app_id, user_id)
        async with self.db.session() as s:
            await s.execute(
                sa.delete(PresenceRoute).where(PresenceRoute.session_id == session_id, PresenceRoute.app_id == app_id)
            )
            await s.commit()

    async def touch(self, session_ids: Sequence[str]) -> None:
        """Heartbeat: one UPDATE for all of an instance's live sessions."""
        if not session_ids:
            return
        async with self.db.session() as s:
            await s.execute(
                sa.update(PresenceRoute)
                .where(PresenceRoute.session_id.in_(list(session_ids)))
                .values(last_seen=utcnow())
            )
            await s.commit()

    async def remove_instance(self, instance_id: str) -> int:
        async with self.db.session() as s:
            result = await s.execute(sa.delete(PresenceRoute).where(PresenceRoute.instance_id == instance_id))
            await s.commit()
            return rowcount(result)

    async def sweep(self, older_than: dt.timedelta) -> int:
        """Routes not refreshed for `older_than` (instances that died without a registry event), and
        polling routes past their grace (clients that stopped polling)."""
        now = utcnow()
        async with self.db.session() as s:
            result = await s.execute(
                sa.delete(PresenceRoute).where(
                    sa.or_(
                        PresenceRoute.last_seen < now - older_than,
                        sa.and_(
                            PresenceRoute.transport.in_(POLLING),
                            PresenceRoute.last_seen < now - dt.timedelta(seconds=POLL_GRACE),
                        ),
                    )
                )
            )
            await s.commit()
            return rowcount(result)

    async def count(self, app_id: str, user_id: str | None = None) -> int:
        """Current connections of an app (or of one user), across every instance."""
        q = sa.select(sa.func.count()).select_from(PresenceRoute).where(PresenceRoute.app_id == app_id)
        if user_id is not None:
            q = q.where(PresenceRoute.user_id == user_id)
        async with self.db.session() as s:
            return int(await s.scalar(q.where(current_routes(utcnow()))) or 0)

    async def counts(self, app_id: str, user_id: str, besides: str | None = None) -> tuple[int, int]:
        """(the app's, the user's) current connections in one statement, not counting session `besides`."""
        q = sa.select(
            sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((PresenceRoute.user_id == user_id, 1), else_=0)), 0)
        ).where(PresenceRoute.app_id == app_id, current_routes(utcnow()))
        if besides is not None:
            q = q.where(PresenceRoute.session_id != besides)
        async with self.db.session() as s:
            row = (await s.execute(q)).one()
        return int(row[0] or 0), int(row[1] or 0)

    async def touch_instance(self, instance_id: str) -> None:
        """Heartbeat for this instance's WebSocket routes in one statement. Polling routes are
        refreshed only while a request is open (OpenPolls), so they leave after their grace."""
        async with self.db.session() as s:
            await s.execute(
                sa.update(PresenceRoute)
                .where(PresenceRoute.instance_id == instance_id, PresenceRoute.transport.not_in(POLLING))
                .values(last_seen=utcnow())
            )
            await s.commit()

    async def users(self, app_id: str, user_ids: Sequence[str]) -> list[UserPresence]:
        unique = list(dict.fromkeys(user_ids))
        now = utcnow()
        async with self.db.session() as s:
            rows = (
                await s.scalars(
                    sa.select(PresenceRoute)
                    .where(PresenceRoute.app_id == app_id, PresenceRoute.user_id.in_(unique))
                    .order_by(PresenceRoute.since)
                )
            ).all()
        by_user: dict[str, list[Route]] = {u: [] for u in unique}
        left: dict[str, str] = {}  # polling routes past their grace, not swept yet: when they were last seen
        for r in rows:
            if _expired(r, now):
                left[r.user_id] = max(left.get(r.user_id, ""), rfc3339(r.last_seen))
            else:
                by_user[r.user_id].append(_route(r))
        offline = [u for u in unique if not by_user[u]]
        stored = await asyncio.gather(*(self.cache.get(f"lastseen:{app_id}:{u}") for u in offline))
        seen = {u: v.decode() for u, v in zip(offline, stored, strict=True) if v is not None}
        out = []
        for u in unique:
            routes = by_user[u]
            last = max((r.last_seen for r in routes), default=None) or max(seen.get(u, ""), left.get(u, "")) or None
            out.append(UserPresence(user_id=u, routes=routes, last_seen=last))
        return out

    async def online_users(self, app_id: str, limit: int = 500, search: str = "") -> list[UserPresence]:
        q = (
            sa.select(PresenceRoute.user_id)
            .where(PresenceRoute.app_id == app_id, current_routes(utcnow()))
            .distinct()
            .limit(limit)
        )
        if search:
            q = q.where(PresenceRoute.user_id.startswith(search, autoescape=True))
        async with self.db.session() as s:
            users = list((await s.scalars(q)).all())
        return await self.users(app_id, sorted(users))
