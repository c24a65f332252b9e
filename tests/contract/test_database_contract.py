"""One database suite over SQLite and MariaDB: migrations reach head, keys and indexes hold."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from pushwire.storage.database import Database
from pushwire.storage.dialect import insert_ignore, utcnow
from pushwire.storage.migrate import downgrade, upgrade
from pushwire.storage.models import Base, Channel, Message
from tests.services import MYSQL_SERVER_URL, new_app_id, unique

EXPECTED_TABLES = set(Base.metadata.tables) | {"alembic_version"}


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as conn:
        return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))


async def test_blank_sqlite_upgrades_to_head_and_back(tmp_sqlite_url: str) -> None:
    await asyncio.to_thread(upgrade, tmp_sqlite_url)
    db = Database(tmp_sqlite_url)
    assert await _tables(db) == EXPECTED_TABLES
    await asyncio.to_thread(downgrade, tmp_sqlite_url, "base")
    assert await _tables(db) == {"alembic_version"}
    await db.close()


async def test_blank_mariadb_upgrades_to_head() -> None:
    from tests.conftest import _admin

    name = unique("pwmig_")
    await _admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    url = f"{MYSQL_SERVER_URL}/{name}"
    try:
        await asyncio.to_thread(upgrade, url)
        db = Database(url)
        assert await _tables(db) == EXPECTED_TABLES
        async with db.engine.connect() as conn:
            uniques = await conn.run_sync(lambda c: sa.inspect(c).get_unique_constraints("messages"))
        assert {"app_id", "channel", "offset"} in [set(u["column_names"]) for u in uniques]
        await db.close()
    finally:
        await _admin(f"DROP DATABASE IF EXISTS {name}")


async def test_channel_names_are_case_sensitive(database: Database) -> None:
    """MySQL's default collation would merge `Room` and `room`; ours must not."""
    app_id = await new_app_id(database)
    async with database.session() as s:
        s.add_all([Channel(app_id=app_id, name="Room", epoch="e1"), Channel(app_id=app_id, name="room", epoch="e2")])
        await s.commit()
        names = (await s.scalars(sa.select(Channel.name).where(Channel.app_id == app_id))).all()
    assert sorted(names) == ["Room", "room"]


async def test_channel_offset_is_unique(database: Database) -> None:
    app_id = await new_app_id(database)
    row = {"app_id": app_id, "channel": "c", "offset": 1, "event": "e", "data": "{}"}
    async with database.session() as s:
        s.add(Message(message_id="m1", **row))
        await s.commit()
    async with database.session() as s:
        s.add(Message(message_id="m2", **row))
        with pytest.raises(IntegrityError):
            await s.commit()


async def test_insert_ignore_keeps_the_first_row(database: Database) -> None:
    app_id = await new_app_id(database)
    table = Channel.__table__
    async with database.session() as s:
        for epoch in ("first", "second"):
            await s.execute(
                insert_ignore(table, database.dialect).values(
                    app_id=app_id, name="x", epoch=epoch, top_offset=0, created_at=utcnow()
                )
            )
        await s.commit()
        assert (await s.scalars(sa.select(Channel.epoch).where(Channel.app_id == app_id))).all() == ["first"]


async def test_datetimes_round_trip_as_utc_with_microseconds(database: Database) -> None:
    app_id = await new_app_id(database)
    now = utcnow()
    async with database.session() as s:
        s.add(Channel(app_id=app_id, name="t", epoch="e", created_at=now))
        await s.commit()
    async with database.session() as s:
        got = await s.scalar(sa.select(Channel.created_at).where(Channel.app_id == app_id))
    assert got == now


async def test_unreachable_database_raises_backend_unavailable() -> None:
    from pushwire.errors import BackendUnavailable

    db = Database("mysql+asyncmy://root:@127.0.0.1:1/nothing")
    with pytest.raises(BackendUnavailable):
        await db.start()
    await db.close()
