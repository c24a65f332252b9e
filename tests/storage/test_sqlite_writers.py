"""SQLite takes one writer at a time: Database.writing() queues this process's writing transactions
in the event loop, so concurrent ones never meet "database is locked", and readers are not held up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
import sqlalchemy as sa

from pushwire.messaging.epochs import EpochSeed
from pushwire.messaging.publish import Publisher, PublishRequest
from pushwire.storage.database import Database
from pushwire.tenants.crypto import SecretBox
from pushwire.tenants.service import TenancyService
from tests.services import unique

SECRET = "test-secret-key-0123456789"


@pytest.fixture
async def lite(tmp_sqlite_url: str) -> AsyncIterator[Database]:
    db = Database(tmp_sqlite_url)
    await db.start()
    async with db.engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
        await conn.execute(sa.text("INSERT INTO counter VALUES (1, 0)"))
    yield db
    await db.close()


async def test_concurrent_read_then_write_transactions_take_turns(lite: Database) -> None:
    """Each reads, yields to the others, then writes: interleaved, they would lose updates (pysqlite
    begins a transaction only at the first write) or fail with "database is locked"."""
    assert lite.serial_writes

    async def bump() -> None:
        async with lite.writing() as conn:
            n = (await conn.execute(sa.text("SELECT n FROM counter WHERE id = 1"))).scalar_one()
            await asyncio.sleep(0)
            await conn.execute(sa.text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 1})

    await asyncio.gather(*(bump() for _ in range(30)))
    async with lite.engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT n FROM counter WHERE id = 1"))).scalar_one() == 30


async def test_a_reader_is_not_held_up_by_an_open_writing_transaction(lite: Database) -> None:
    async with lite.writing() as conn:
        await conn.execute(sa.text("UPDATE counter SET n = 7 WHERE id = 1"))
        # WAL: a reader sees the last committed value while the write is open.
        async with asyncio.timeout(5), lite.engine.connect() as reader:
            assert (await reader.execute(sa.text("SELECT n FROM counter WHERE id = 1"))).scalar_one() == 0


async def test_concurrent_publishes_on_sqlite_keep_offsets_exact(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    await db.start()
    try:
        tenancy = TenancyService(db, SecretBox(SECRET))
        tenant = await tenancy.create_tenant(unique("t-"))
        app = await tenancy.create_app(tenant.tenant_id, "web")
        publisher = Publisher(db, EpochSeed(SECRET))
        reqs = [
            PublishRequest(channels=("room.a", f"room.{i % 3}"), event="e", data=msgspec.Raw(b"1")) for i in range(40)
        ]
        results = await asyncio.gather(*(publisher.publish(tenant.tenant_id, app.app_id, r) for r in reqs))
        offsets = sorted(r.deliveries[0].offset for r in results)
        assert offsets == list(range(1, 41))
    finally:
        await db.close()


async def test_mariadb_writers_are_not_serialised(mysql_url: str) -> None:
    db = Database(mysql_url)
    try:
        assert not db.serial_writes
    finally:
        await db.close()
