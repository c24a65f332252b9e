"""Live servers for the realtime tests, on the single-node and the MariaDB + Redis backend sets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.live import LiveServer, backend_env, live_server


@pytest.fixture(params=["single", "mariadb+redis"])
async def live(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LiveServer]:
    env = await backend_env(request, tmp_path, PUSHWIRE_HEARTBEAT="25")
    async with live_server(env) as server:
        yield server
