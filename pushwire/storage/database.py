"""The async engine and session factory for either dialect, plus a readiness probe.

SQLite has one writer at a time: its transactions that write (`writing()`) queue on an asyncio
lock, so concurrent publishes wait their turn in the event loop instead of spinning in SQLite's
busy handler or failing with "database is locked"; readers stay concurrent (WAL).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from pushwire.errors import BackendUnavailable
from pushwire.storage.dialect import engine_options, is_sqlite, on_sqlite_connect


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(url, **engine_options(url))
        if is_sqlite(url):
            event.listen(self.engine.sync_engine, "connect", on_sqlite_connect)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = asyncio.Lock() if is_sqlite(url) else None

    @property
    def serial_writes(self) -> bool:
        """True when the database takes one writing transaction at a time (SQLite)."""
        return self._write_lock is not None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def start(self) -> None:
        await self.ping()

    async def ping(self, timeout: float = 3.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                async with self.engine.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
        except (OSError, TimeoutError, OperationalError, DBAPIError) as exc:
            raise BackendUnavailable("database", str(exc).splitlines()[0][:200]) from None

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[AsyncConnection]:
        """A Core transaction that writes: committed on exit, rolled back on an exception."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    async def close(self) -> None:
        await self.engine.dispose()
