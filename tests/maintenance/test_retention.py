"""The retention sweep on SQLite and MariaDB: old messages and expired idempotency keys go, the rest stays."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import msgspec
import pytest
import sqlalchemy as sa

from pushwire.messaging.epochs import EpochSeed
from pushwire.messaging.history import History
from pushwire.messaging.publish import Publisher, PublishRequest
from pushwire.messaging.retention import RetentionSweeper
from pushwire.registry.local import LocalRegistry
from pushwire.storage.database import Database
from pushwire.storage.models.messages import IdempotencyRecord, Message
from pushwire.storage.models.tenancy import App
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.service import TenancyService
from pushwire.tenants.views import AppLimits
from tests.services import unique

SECRET = "test-secret-key-0123456789"


async def _age(db: Database, app_id: str, days: float, *, first: int, last: int) -> None:
    """Backdate offsets first..last of the app's messages (and their idempotency keys)."""
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    async with db.session() as s:
        await s.execute(
            sa.update(Message)
            .where(Message.app_id == app_id, Message.offset.between(first, last))
            .values(created_at=when)
        )
        await s.execute(sa.update(IdempotencyRecord).where(IdempotencyRecord.app_id == app_id).values(created_at=when))
        await s.commit()


async def test_sweep_removes_only_what_retention_allows(database: Database) -> None:
    tenancy = TenancyService(database, SecretBox(SECRET))
    tenant = await tenancy.create_tenant(unique("t-"))
    short = await tenancy.create_app(tenant.tenant_id, "short", None, AppLimits(retention_days=1))
    long = await tenancy.create_app(tenant.tenant_id, "long", None, AppLimits(retention_days=30))
    epochs = EpochSeed(SECRET)
    publisher = Publisher(database, epochs)
    for app_id in (short.app_id, long.app_id):
        for i in range(10):
            await publisher.publish(
                tenant.tenant_id,
                app_id,
                PublishRequest(
                    channels=("room.a",), event="e", data=msgspec.Raw(str(i).encode()), idempotency_key=f"k{i}"
                ),
            )
        await _age(database, app_id, 2, first=1, last=6)

    result = await RetentionSweeper(database, LocalRegistry()).sweep()

    assert result.messages == 6  # offsets 1..6 of the 1-day app only
    assert result.idempotency_keys == 20  # every key was aged 2 days: past the 24 h window
    async with database.session() as s:
        kept = dict(
            (
                await s.execute(
                    sa.select(Message.app_id, sa.func.count())
                    .where(Message.app_id.in_([short.app_id, long.app_id]))
                    .group_by(Message.app_id)
                )
            ).all()
        )
    assert kept == {short.app_id: 4, long.app_id: 10}
    # What is left of the swept channel starts after the sweep point; the top is unchanged.
    page = await History(database, epochs).read(short.app_id, "room.a", after=0, limit=100)
    assert [m.offset for m in page.messages] == [7, 8, 9, 10]
    assert page.top == 10
    # A second sweep finds nothing more.
    assert await RetentionSweeper(database, LocalRegistry()).sweep() == type(result)(messages=0, idempotency_keys=0)


async def test_the_running_sweeper_takes_the_lock_and_sweeps(database: Database) -> None:
    tenancy = TenancyService(database, SecretBox(SECRET))
    tenant = await tenancy.create_tenant(unique("t-"))
    app = await tenancy.create_app(tenant.tenant_id, "short", None, AppLimits(retention_days=1))
    publisher = Publisher(database, EpochSeed(SECRET))
    for i in range(3):
        await publisher.publish(
            tenant.tenant_id,
            app.app_id,
            PublishRequest(channels=("room.a",), event="e", data=msgspec.Raw(str(i).encode())),
        )
    await _age(database, app.app_id, 3, first=1, last=3)
    registry = LocalRegistry()
    held = registry.lock("retention-sweep", 60)
    assert await held.acquire(timeout=0)  # another instance is sweeping: this one must not
    sweeper = RetentionSweeper(database, registry, interval=0.05)
    await sweeper.start()
    try:
        await asyncio.sleep(0.3)
        assert sweeper.last is None
        await held.release()
        async with asyncio.timeout(5):
            while sweeper.last is None:
                await asyncio.sleep(0.05)
    finally:
        await sweeper.stop()
    async with database.session() as s:
        left = await s.scalar(sa.select(sa.func.count()).select_from(Message).where(Message.app_id == app.app_id))
    assert left == 0


async def _two_apps_with_old_messages(database: Database) -> tuple[str, str]:
    """A 1-day app and a 30-day app, each with 3 messages aged 4,000 days (past any retention)."""
    tenancy = TenancyService(database, SecretBox(SECRET))
    tenant = await tenancy.create_tenant(unique("t-"))
    publisher = Publisher(database, EpochSeed(SECRET))
    apps = []
    for name, days in (("a", 1), ("b", 30)):
        app = await tenancy.create_app(tenant.tenant_id, name, None, AppLimits(retention_days=days))
        for i in range(3):
            await publisher.publish(
                tenant.tenant_id,
                app.app_id,
                PublishRequest(channels=("room.a",), event="e", data=msgspec.Raw(str(i).encode())),
            )
        await _age(database, app.app_id, 4_000, first=1, last=3)
        apps.append(app.app_id)
    return apps[0], apps[1]


async def _left(database: Database, app_id: str) -> int:
    async with database.session() as s:
        count = await s.scalar(sa.select(sa.func.count()).select_from(Message).where(Message.app_id == app_id))
    return int(count or 0)


async def test_a_huge_retention_is_clamped_to_the_maximum_and_cannot_overflow(database: Database) -> None:
    short, huge = await _two_apps_with_old_messages(database)
    async with database.session() as s:  # as a tenant admin could store before limits were checked
        await s.execute(sa.update(App).where(App.id == huge).values(retention_days=1_000_000))
        await s.commit()
    result = await RetentionSweeper(database, LocalRegistry()).sweep()  # default maximum: 3,650 days
    # 4,000 days is past the 3,650-day platform maximum the huge retention is clamped to.
    assert await _left(database, short) == 0 and await _left(database, huge) == 0
    assert result.messages >= 6 and result.failed_apps == 0


async def test_one_failing_app_never_stops_the_others(database: Database, caplog: pytest.LogCaptureFixture) -> None:
    first, second = await _two_apps_with_old_messages(database)

    class Flaky(RetentionSweeper):
        async def sweep_app(self, app_id: str, days: int | None, now: dt.datetime) -> int:
            if app_id == first:
                raise RuntimeError("lock wait timeout")  # what a busy database may answer for one app
            return await super().sweep_app(app_id, days, now)

    with caplog.at_level(logging.ERROR, logger="pushwire.messaging.retention"):
        result = await Flaky(database, LocalRegistry()).sweep()
    assert await _left(database, first) == 3 and await _left(database, second) == 0
    assert result.failed_apps == 1
    assert any(first in r.getMessage() and r.exc_info for r in caplog.records)
    await RetentionSweeper(database, LocalRegistry()).sweep()  # leave nothing for the other tests' counts
    assert await _left(database, first) == 0
