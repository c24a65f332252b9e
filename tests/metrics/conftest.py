"""A built (not started) runtime on its own SQLite database, and the cache on both implementations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pushwire.cache.base import Cache
from pushwire.runtime import Runtime
from pushwire.settings import load_settings
from pushwire.storage.migrate import upgrade
from pushwire.wiring import build_cache
from tests.services import REDIS_URL, unique


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    url = f"sqlite+aiosqlite:///{tmp_path}/metrics.db"
    await asyncio.to_thread(upgrade, url)
    rt = Runtime.build(
        load_settings({"PUSHWIRE_DATABASE_URL": url, "PUSHWIRE_SECRET_KEY": "test-secret-key-0123456789"})
    )
    yield rt
    await rt.backends.database.close()


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    c = build_cache("memory://" if request.param == "memory" else REDIS_URL, prefix=unique("pwtest:"))
    await c.start()
    yield c
    await c.close()
