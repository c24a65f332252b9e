"""Shared fixtures. Backend contract suites parametrise over memory and real implementations.

Real services are never skipped: if MariaDB, Redis, etcd or the Kafka broker is missing, the
fixtures raise and the run fails (scripts/services.sh starts them for `make test`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from pushwire.storage.database import Database
from pushwire.storage.migrate import upgrade
from tests.services import MYSQL_SERVER_URL, unique


async def _admin(sql: str) -> None:
    engine = create_async_engine(MYSQL_SERVER_URL + "/", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(sql))
    finally:
        await engine.dispose()


def in_thread(fn: Callable[[], object]) -> None:
    """Run blocking set-up (its own event loop, Alembic's too) even when a loop is already running."""
    with ThreadPoolExecutor(1) as pool:
        pool.submit(fn).result()


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """A throwaway MariaDB database at head, for the whole session; dropped afterwards."""
    name = unique("pwtest_")
    url = f"{MYSQL_SERVER_URL}/{name}"
    in_thread(lambda: asyncio.run(_admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")))
    try:
        in_thread(lambda: upgrade(url))
        yield url
    finally:
        in_thread(lambda: asyncio.run(_admin(f"DROP DATABASE IF EXISTS {name}")))


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("db") / "pushwire.db"
    url = f"sqlite+aiosqlite:///{path}"
    in_thread(lambda: upgrade(url))
    return url


@pytest.fixture(params=["sqlite", "mariadb"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs a test once per database dialect."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "mysql_url")


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    db = Database(db_url)
    await db.start()
    yield db
    await db.close()


@pytest.fixture
def tmp_sqlite_url(tmp_path: Path) -> str:
    """A blank (unmigrated) SQLite database of this test's own."""
    return f"sqlite+aiosqlite:///{tmp_path / 'blank.db'}"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """`item.rep_call`: the call phase's report, read by fixtures that print what they saw when a
    test failed (the browser console, the Pusher libraries' frames)."""
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
