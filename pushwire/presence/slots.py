"""Connection slots of WebSocket sessions: taken (limits checked, route written) and given back in batches.

A connect storm used to cost each connection its own count query, insert and commit (and each
close its own delete). Here every take and give-back waiting when a transaction starts shares
it: deletes first, then per app one count of the app's routes and one of the users' in the
batch, the decisions in arrival order, one multi-row insert, one commit. One transaction runs at
a time, so two connects of this instance never both take the app's last slot; an idle server
runs a take at once (no added latency). Across instances the count is read-then-insert, as
before. Polling sessions keep their own path (presence/store.py `upsert`), they are not a hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import sqlalchemy as sa

from pushwire.errors import BackendUnavailable
from pushwire.presence.store import current_routes
from pushwire.storage.database import Database
from pushwire.storage.dialect import table_of, utcnow
from pushwire.storage.models import PresenceRoute

# Takes per transaction: bounds the IN lists and the insert.
MAX_BATCH = 500
APP_FULL = "the app is at its connection limit"
USER_FULL = "this user is at the per-user connection limit"


@dataclass(slots=True)
class _Take:
    session_id: str
    app_id: str
    user_id: str
    transport: str
    max_app: int
    max_user: int
    answer: asyncio.Future[str | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class RouteSlots:
    def __init__(self, db: Database, instance_id: str, max_batch: int = MAX_BATCH) -> None:
        self.db = db
        self.instance_id = instance_id
        self.max_batch = max_batch
        self._takes: list[_Take] = []
        self._gives: list[tuple[str, asyncio.Future[None]]] = []
        self._worker: asyncio.Task[None] | None = None
        self.transactions = 0

    async def take(
        self, session_id: str, app_id: str, user_id: str, transport: str, max_app: int, max_user: int
    ) -> str | None:
        """Write the session's route if the app and the user have a slot: None, else why not."""
        item = _Take(session_id, app_id, user_id, transport, max_app, max_user)
        self._takes.append(item)
        self._kick()
        return await item.answer

    async def give_back(self, session_id: str) -> None:
        """Delete the session's route (done when this returns)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gives.append((session_id, done))
        self._kick()
        await done

    def _kick(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name="route-slots")

    async def _work(self) -> None:
        try:
            while self._takes or self._gives:
                takes, self._takes = self._takes[: self.max_batch], self._takes[self.max_batch :]
                gives, self._gives = self._gives, []
                takes = [t for t in takes if not t.answer.done()]  # callers that hung up
                try:
                    answers = await self._transaction(takes, [sid for sid, _ in gives])
                except BaseException as exc:
                    failure = exc if isinstance(exc, Exception) else BackendUnavailable("database", "interrupted")
                    for t in takes:
                        _fail(t.answer, failure)
                    for _, done in gives:
                        _fail(done, failure)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for t, answer in zip(takes, answers, strict=True):
                    if not t.answer.done():
                        t.answer.set_result(answer)
                for _, done in gives:
                    if not done.done():
                        done.set_result(None)
        finally:
            self._worker = None
            # Cancelled (shutdown) with callers still waiting: they must not wait forever.
            for t in self._takes:
                _fail(t.answer, BackendUnavailable("database", "interrupted"))
            for _, done in self._gives:
                _fail(done, BackendUnavailable("database", "interrupted"))
            if self._takes or self._gives:
                self._takes, self._gives = [], []

    async def _transaction(self, takes: list[_Take], gives: list[str]) -> list[str | None]:
        self.transactions += 1
        routes = table_of(PresenceRoute)
        now = utcnow()
        answers: list[str | None] = []
        async with self.db.writing() as conn:
            if gives:
                await conn.execute(sa.delete(routes).where(routes.c.session_id.in_(gives)))
            by_app: dict[str, list[_Take]] = {}
            for t in takes:
                by_app.setdefault(t.app_id, []).append(t)
            app_counts: dict[str, int] = {}
            user_counts: dict[tuple[str, str], int] = {}
            for app_id, items in by_app.items():
                live = current_routes(now)
                total = await conn.scalar(
                    sa.select(sa.func.count()).select_from(routes).where(routes.c.app_id == app_id, live)
                )
                app_counts[app_id] = int(total or 0)
                users = sorted({t.user_id for t in items})
                rows = await conn.execute(
                    sa.select(routes.c.user_id, sa.func.count())
                    .where(routes.c.app_id == app_id, routes.c.user_id.in_(users), live)
                    .group_by(routes.c.user_id)
                )
                for user_id, n in rows:
                    user_counts[(app_id, user_id)] = int(n)
            admitted = []
            for t in takes:
                key = (t.app_id, t.user_id)
                if app_counts[t.app_id] >= t.max_app:
                    answers.append(APP_FULL)
                elif user_counts.get(key, 0) >= t.max_user:
                    answers.append(USER_FULL)
                else:
                    answers.append(None)
                    app_counts[t.app_id] += 1
                    user_counts[key] = user_counts.get(key, 0) + 1
                    admitted.append(
                        {
                            "session_id": t.session_id,
                            "app_id": t.app_id,
                            "user_id": t.user_id,
                            "instance_id": self.instance_id,
                            "transport": t.transport,
                            "since": now,
                            "last_seen": now,
                        }
                    )
            if admitted:
                await conn.execute(sa.insert(routes), admitted)
        return answers

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(BaseException):
                await self._worker


def _fail(
    future: asyncio.Future[object] | asyncio.Future[str | None] | asyncio.Future[None], exc: BaseException
) -> None:
    if not future.done():
        future.set_exception(exc)
