"""Live servers for the realtime tests, on the single-node and the MariaDB + Redis backend sets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pushwire.storage.migrate import upgrade
from tests.live import LiveServer, live_server
from tests.services import REDIS_URL


@pytest.fixture(params=["single", "mariadb+redis"])
async def live(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LiveServer]:
    env = {"PUSHWIRE_SECRET_KEY": "test-secret-key-0123456789", "PUSHWIRE_HEARTBEAT": "25"}
    if request.param == "single":
        url = f"sqlite+aiosqlite:///{tmp_path}/live.db"
        await asyncio.to_thread(upgrade, url)
        env["PUSHWIRE_DATABASE_URL"] = url
    else:
        env["PUSHWIRE_DATABASE_URL"] = request.getfixturevalue("mysql_url")
        env["PUSHWIRE_CACHE_URL"] = REDIS_URL
    async with live_server(env) as server:
        yield server
