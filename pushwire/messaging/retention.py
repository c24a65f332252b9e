"""The retention sweep: stored messages older than their app's `retention_days`, and expired idempotency keys.

One instance sweeps at a time (a registry lock), in small chunks so the delete never holds long
locks on `messages` while pushes insert. A client resuming past what was swept gets
`recovered: false` with the current top (recovery already treats a missing range as a gap).

Each app is swept on its own: one that fails is logged and the others are still swept. Its
retention is clamped to the platform maximum (PUSHWIRE_MAX_RETENTION_DAYS), so a value stored
before the maxima were enforced cannot overflow the cutoff date.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import msgspec
import sqlalchemy as sa

from pushwire.messaging.publish import IDEMPOTENCY_WINDOW
from pushwire.registry.base import Registry
from pushwire.storage.database import Database
from pushwire.storage.models.messages import IdempotencyRecord, Message
from pushwire.storage.models.tenancy import App
from pushwire.tasks import cancel_and_wait

log = logging.getLogger(__name__)

CHUNK = 2_000
LOCK_TTL = 60
# Whatever the maximum setting says: a cutoff 100 years back keeps every date representable.
HARD_MAX_DAYS = 36_500


class SweepResult(msgspec.Struct, frozen=True):
    messages: int
    idempotency_keys: int
    failed_apps: int = 0


class RetentionSweeper:
    def __init__(
        self, db: Database, registry: Registry, interval: float = 300.0, max_retention_days: int = 3_650
    ) -> None:
        self.db = db
        self.registry = registry
        self.interval = interval
        self.max_days = max(1, min(max_retention_days, HARD_MAX_DAYS))
        self._task: asyncio.Task[None] | None = None
        self.last: SweepResult | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="retention-sweep")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                lock = self.registry.lock("retention-sweep", LOCK_TTL)
                if await lock.acquire(timeout=0):
                    try:
                        self.last = await self.sweep()
                    finally:
                        await lock.release()
            except Exception:
                log.exception("retention sweep failed")

    async def sweep(self, now: dt.datetime | None = None) -> SweepResult:
        now = now or dt.datetime.now(dt.UTC)
        async with self.db.session() as s:
            apps = (await s.execute(sa.select(App.id, App.retention_days))).all()
        messages = failed = 0
        for app_id, days in apps:
            try:
                messages += await self.sweep_app(app_id, days, now)
            except Exception:
                failed += 1
                log.exception("retention sweep of app %s failed; the other apps are still swept", app_id)
        keys = await self._delete_idempotency(now - IDEMPOTENCY_WINDOW)
        if messages or keys:
            log.info("retention sweep removed %d messages and %d idempotency keys", messages, keys)
        return SweepResult(messages=messages, idempotency_keys=keys, failed_apps=failed)

    async def sweep_app(self, app_id: str, days: int | None, now: dt.datetime) -> int:
        cutoff = now - dt.timedelta(days=min(max(1, int(days or 1)), self.max_days))
        return await self._delete_chunks(
            sa.select(Message.seq).where(Message.app_id == app_id, Message.created_at < cutoff), Message.seq
        )

    async def _delete_chunks(self, select: sa.Select[tuple[int]], column: sa.orm.InstrumentedAttribute[int]) -> int:
        total = 0
        while True:
            async with self.db.session() as s:
                ids = list((await s.scalars(select.order_by(column).limit(CHUNK))).all())
                if not ids:
                    return total
                await s.execute(sa.delete(Message).where(column.in_(ids)))
                await s.commit()
            total += len(ids)
            await asyncio.sleep(0)  # let pushes through between chunks

    async def _delete_idempotency(self, cutoff: dt.datetime) -> int:
        total = 0
        while True:
            async with self.db.session() as s:
                rows = (
                    await s.execute(
                        sa.select(IdempotencyRecord.app_id, IdempotencyRecord.key)
                        .where(IdempotencyRecord.created_at < cutoff)
                        .limit(CHUNK)
                    )
                ).all()
                if not rows:
                    return total
                await s.execute(
                    sa.delete(IdempotencyRecord).where(
                        sa.tuple_(IdempotencyRecord.app_id, IdempotencyRecord.key).in_([tuple(r) for r in rows])
                    )
                )
                await s.commit()
            total += len(rows)
