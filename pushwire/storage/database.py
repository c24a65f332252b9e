"""The async engine and session factory for either dialect, plus a readiness probe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from pushwire.errors import BackendUnavailable
from pushwire.storage.dialect import engine_options, is_sqlite, on_sqlite_connect


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(url, **engine_options(url))
        if is_sqlite(url):
            event.listen(self.engine.sync_engine, "connect", on_sqlite_connect)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

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

    async def close(self) -> None:
        await self.engine.dispose()
