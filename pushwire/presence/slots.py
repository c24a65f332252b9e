"""Connection slots of WebSocket sessions: taken (limits checked, route written) and given back in batches.

A connect storm used to cost each connection its own count query, insert and commit (and each
close its own delete). Here every take and give-back waiting when a transaction starts shares
it: deletes first, the decisions in arrival order, one multi-row insert, one commit. One
transaction runs at a time, so two connects of this instance never both take the app's last slot;
an idle server runs a take at once (no added latency).

Counts: this instance's own WebSocket routes are counted in memory (exact: only this class
writes and deletes them). The rest — other instances' routes, and polling routes, which
presence/store.py writes — is read from the database: the app's total at most once per
REMOTE_TTL seconds per app (a scan of the app's routes), the batch's users' counts per batch
(index lookups) when the app has any. So across instances a limit may be passed by what the
others admitted in the last REMOTE_TTL seconds; a poll taken here forgets the cached total.

Decided in memory: while the app's cached total of uncounted routes is fresh and zero (a single
node, or an app only this instance serves), a take is decided from the in-memory counts at once
when it is within the limits even if every take still waiting on the database is admitted (else
it waits its turn), and its route is written behind: at most every WRITE_BEHIND seconds, with
any transaction that runs. A route given back before it was written is never written. A write
that fails is retried with a backoff; a crash loses only routes of connections that died with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import TypeVar

import sqlalchemy as sa

from pushwire.errors import BackendUnavailable
from pushwire.presence.store import POLLING, current_routes
from pushwire.storage.database import Database
from pushwire.storage.dialect import table_of, utcnow
from pushwire.storage.models import PresenceRoute

_K = TypeVar("_K")
log = logging.getLogger(__name__)

# Takes per transaction: bounds the IN lists and the insert.
MAX_BATCH = 500
# How long another instance's (or a poll's) routes may go uncounted here, in seconds.
REMOTE_TTL = 1.0
# Seconds routes decided in memory wait to be written together.
WRITE_BEHIND = 0.05
# Seconds before a failed write of routes is tried again (doubling up to RETRY_MAX).
RETRY_FIRST, RETRY_MAX = 0.2, 5.0
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
        # This instance's WebSocket routes: per app, the total and per user.
        self._mine: dict[str, int] = {}
        self._mine_users: dict[tuple[str, str], int] = {}
        # Per app: (routes not counted in `_mine`, when read).
        self._others: dict[str, tuple[int, float]] = {}
        # Routes decided in memory, not written yet (by session id).
        self._unwritten: dict[str, dict[str, object]] = {}
        # Takes whose callers still wait on the database, per app and per user.
        self._waiting: dict[str, int] = {}
        self._waiting_users: dict[tuple[str, str], int] = {}
        self._retry = 0.0
        self._hurry: asyncio.Event | None = None

    async def take(
        self, session_id: str, app_id: str, user_id: str, transport: str, max_app: int, max_user: int
    ) -> str | None:
        """Write the session's route if the app and the user have a slot: None, else why not."""
        key = (app_id, user_id)
        cached = self._others.get(app_id)
        if cached is not None and cached[0] == 0 and time.monotonic() - cached[1] <= REMOTE_TTL:
            # Only this instance's routes count: decided now, unless takes waiting on the database
            # could change the answer.
            app_n, user_n = self._mine.get(app_id, 0), self._mine_users.get(key, 0)
            waiting = self._waiting.get(app_id, 0)
            if app_n + waiting < max_app and user_n + self._waiting_users.get(key, 0) < max_user:
                self._count_in(app_id, user_id)
                self._unwritten[session_id] = self._row(session_id, app_id, user_id, transport, utcnow())
                if self._worker is None:
                    self._kick()
                return None
            if not waiting:
                return APP_FULL if app_n >= max_app else USER_FULL
        item = _Take(session_id, app_id, user_id, transport, max_app, max_user)
        self._takes.append(item)
        _add(self._waiting, app_id)
        _add(self._waiting_users, key)
        self._kick()
        try:
            return await item.answer
        finally:
            _drop(self._waiting, app_id)
            _drop(self._waiting_users, key)

    def _row(self, session_id: str, app_id: str, user_id: str, transport: str, now: object) -> dict[str, object]:
        return {
            "session_id": session_id,
            "app_id": app_id,
            "user_id": user_id,
            "instance_id": self.instance_id,
            "transport": transport,
            "since": now,
            "last_seen": now,
        }

    def _count_in(self, app_id: str, user_id: str) -> None:
        _add(self._mine, app_id)
        _add(self._mine_users, (app_id, user_id))

    async def give_back(self, session_id: str, app_id: str, user_id: str) -> None:
        """Delete the session's route (done when this returns; the slot is free at once)."""
        _drop(self._mine, app_id)
        _drop(self._mine_users, (app_id, user_id))
        if self._unwritten.pop(session_id, None) is not None:
            return  # never written: nothing to delete
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._gives.append((session_id, done))
        self._kick()
        await done

    def forget_others(self, app_id: str) -> None:
        """A route this class does not count was added here (a poll): read the app's total again."""
        self._others.pop(app_id, None)

    def _kick(self) -> None:
        if self._hurry is not None:
            self._hurry.set()
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name="route-slots")

    async def _work(self) -> None:
        try:
            while self._takes or self._gives or self._unwritten:
                if not self._takes and not self._gives:
                    # Only writes behind are left: gather more (longer after a failed write), unless
                    # a take or a give-back needs a transaction now.
                    self._hurry = asyncio.Event()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(self._retry, WRITE_BEHIND)):
                            await self._hurry.wait()
                    self._hurry = None
                takes, self._takes = self._takes[: self.max_batch], self._takes[self.max_batch :]
                gives, self._gives = self._gives, []
                takes = [t for t in takes if not t.answer.done()]  # callers that hung up
                behind, self._unwritten = self._unwritten, {}
                try:
                    answers = await self._transaction(takes, [sid for sid, _ in gives], list(behind.values()))
                    self._retry = 0.0
                except BaseException as exc:
                    # Written behind: kept for the next try, unless given back meanwhile.
                    gone = {sid for sid, _ in gives} | {sid for sid, _ in self._gives}
                    self._unwritten = {sid: row for sid, row in behind.items() if sid not in gone} | self._unwritten
                    self._retry = min(RETRY_MAX, self._retry * 2 or RETRY_FIRST)
                    if behind:
                        log.warning("%d presence routes not written yet (%s); retrying", len(behind), exc)
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

    async def _transaction(
        self, takes: list[_Take], gives: list[str], behind: list[dict[str, object]]
    ) -> list[str | None]:
        self.transactions += 1
        routes = table_of(PresenceRoute)
        now = utcnow()
        clock = time.monotonic()
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
                # Routes not counted in memory: other instances' and polling ones, still current.
                others = sa.and_(
                    routes.c.app_id == app_id,
                    sa.or_(routes.c.instance_id != self.instance_id, routes.c.transport.in_(POLLING)),
                    current_routes(now),
                )
                cached = self._others.get(app_id)
                if cached is None or clock - cached[1] > REMOTE_TTL:
                    total = int(await conn.scalar(sa.select(sa.func.count()).select_from(routes).where(others)) or 0)
                    cached = self._others[app_id] = (total, clock)
                app_counts[app_id] = self._mine.get(app_id, 0) + cached[0]
                for t in items:
                    user_counts[(app_id, t.user_id)] = self._mine_users.get((app_id, t.user_id), 0)
                if cached[0]:
                    users = sorted({t.user_id for t in items})
                    rows = await conn.execute(
                        sa.select(routes.c.user_id, sa.func.count())
                        .where(others, routes.c.user_id.in_(users))
                        .group_by(routes.c.user_id)
                    )
                    for user_id, n in rows:
                        user_counts[(app_id, user_id)] += int(n)
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
                    admitted.append(self._row(t.session_id, t.app_id, t.user_id, t.transport, now))
            if admitted or behind:
                await conn.execute(sa.insert(routes), admitted + behind)
        # Committed: these routes are this instance's now.
        for row in admitted:
            self._count_in(str(row["app_id"]), str(row["user_id"]))
        return answers

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(BaseException):
                await self._worker


def _add(counts: dict[_K, int], key: _K) -> None:
    counts[key] = counts.get(key, 0) + 1


def _drop(counts: dict[_K, int], key: _K) -> None:
    n = counts.get(key, 0) - 1
    if n > 0:
        counts[key] = n
    else:
        counts.pop(key, None)  # users who left leave nothing behind


def _fail(
    future: asyncio.Future[object] | asyncio.Future[str | None] | asyncio.Future[None], exc: BaseException
) -> None:
    if not future.done():
        future.set_exception(exc)
