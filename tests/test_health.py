"""/health and /ready: readiness names the backend that does not answer, never its error text."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient

from pushwire.app import create_app
from pushwire.settings import load_settings
from pushwire.storage.migrate import upgrade
from tests.services import REDIS_URL


class TcpRelay:
    """A real TCP hop in front of Redis that the test can cut, to make a live backend vanish."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.conns: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self.target)
        self.conns |= {writer, up_w}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            w.close()

        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

    async def cut(self) -> None:
        assert self.server
        self.server.close()
        for w in self.conns:
            w.close()


@pytest.fixture
async def relay() -> AsyncIterator[TcpRelay]:
    host, port = REDIS_URL.split("//")[1].split("/")[0].split(":")
    r = TcpRelay(host, int(port))
    yield r
    with contextlib.suppress(Exception):
        await r.cut()


async def test_health_and_ready_single_node(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    await asyncio.to_thread(upgrade, url)
    app = create_app(load_settings({"PUSHWIRE_DATABASE_URL": url, "PUSHWIRE_INSTANCE_ID": "pw-test"}))
    async with AsyncTestClient(app) as client:
        r = await client.get("/health")
        assert r.status_code == 200 and r.json()["instance"] == "pw-test"
        r = await client.get("/ready")
        assert r.status_code == 200
        assert r.json() == {
            "status": "ready",
            "failed": [],
            "backends": {"database": "ok", "cache": "ok", "bus": "ok", "registry": "ok"},
        }


class Collect(logging.Handler):
    """Records of one logger (caplog's root handler does not survive Litestar's logging set-up)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_ready_is_503_and_names_the_missing_backend(tmp_path: Path, relay: TcpRelay) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    await asyncio.to_thread(upgrade, url)
    port = await relay.start()
    settings = load_settings({"PUSHWIRE_DATABASE_URL": url, "PUSHWIRE_CACHE_URL": f"redis://127.0.0.1:{port}/15"})
    app = create_app(settings)
    # Started in this loop (the test client's lifespan runs in another thread, where the relay is not).
    await app.state.runtime.start()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/ready")).status_code == 200
        await relay.cut()
        collect = Collect()
        logging.getLogger("pushwire.web.health").addHandler(collect)
        try:
            r = await client.get("/ready")
        finally:
            logging.getLogger("pushwire.web.health").removeHandler(collect)
        assert r.status_code == 503
        body = r.json()
        assert body == {
            "status": "unavailable",
            "failed": ["cache"],
            "backends": {"database": "ok", "cache": "unavailable", "bus": "ok", "registry": "ok"},
            "error": "unavailable",
            "message": "not ready: cache",
        }
        # Hosts, ports and driver messages stay in the server log, out of the public answer.
        assert str(port) not in r.text and "127.0.0.1" not in r.text
        assert any("cache" in line and str(port) in line for line in collect.lines), collect.lines
        assert (await client.get("/health")).status_code == 200
    await app.state.runtime.stop()


async def test_unknown_route_gets_json_error(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    await asyncio.to_thread(upgrade, url)
    async with AsyncTestClient(create_app(load_settings({"PUSHWIRE_DATABASE_URL": url}))) as client:
        r = await client.get("/nope")
        assert r.status_code == 404 and r.json()["error"] == "not_found"
        r = await client.get("/schema/openapi.json")
        assert r.status_code == 200 and "/health" in r.json()["paths"]
