"""A real server for end-to-end tests: uvicorn in the test's event loop on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
import websockets
from litestar import Litestar

from pushwire.app import create_app
from pushwire.cli.tenancy import mint_token
from pushwire.realtime.transports.direct import DirectWebSocketProtocol
from pushwire.runtime import Runtime
from pushwire.sdk import AsyncServerClient
from pushwire.settings import load_settings
from pushwire.tenants.views import AppCreated, AppLimits
from pushwire.web.http_protocol import HttpProtocol
from tests.services import unique


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    app: Litestar
    runtime: Runtime
    port: int
    tenant_id: str
    created: AppCreated
    server: uvicorn.Server
    task: asyncio.Task[None]
    extra_apps: list[AppCreated] = field(default_factory=list)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def app_id(self) -> str:
        return self.created.app_id

    def token(
        self, user: str, channels: list[str] | None = None, ttl: int = 600, created: AppCreated | None = None
    ) -> str:
        c = created or self.created
        assert c.client_key.secret
        return mint_token(c.app_id, user, c.client_key.kid, c.client_key.secret, ttl, channels or [])

    def ws_url(self, token: str) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/ws?token={token}"

    def pusher(self, created: AppCreated | None = None) -> AsyncServerClient:
        c = created or self.created
        return AsyncServerClient(self.http, c.server_key.key_id, c.server_key.secret)

    async def new_app(self, origins: list[str] | None = None, **limits: int) -> AppCreated:
        return await self.runtime.tenancy.create_app(self.tenant_id, unique("app"), origins, AppLimits(**limits))


async def backend_env(request: Any, tmp_path: Any, **extra: str) -> dict[str, str]:
    """Settings for a fixture parametrised over "single" (a migrated SQLite file + memory backends)
    and "mariadb+redis" (the session's MariaDB database and the tests' Redis database)."""
    from pushwire.storage.migrate import upgrade
    from tests.services import REDIS_URL

    env = {"PUSHWIRE_SECRET_KEY": "test-secret-key-0123456789", **extra}
    if request.param == "single":
        url = f"sqlite+aiosqlite:///{tmp_path}/live.db"
        await asyncio.to_thread(upgrade, url)
        env["PUSHWIRE_DATABASE_URL"] = url
    else:
        env["PUSHWIRE_DATABASE_URL"] = request.getfixturevalue("mysql_url")
        env["PUSHWIRE_CACHE_URL"] = REDIS_URL
    return env


@contextlib.asynccontextmanager
async def live_server(env: dict[str, str], relay: bool = True) -> AsyncIterator[LiveServer]:
    settings = load_settings(env)
    app = create_app(settings, Runtime.build(settings, relay=relay))
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ws=DirectWebSocketProtocol,  # as `pushwire run` serves it
        http=HttpProtocol,  # addresses without a socket object per connection (web/http_protocol.py)
        ws_max_size=64 * 1024,
        # No per-connection ping timer: the hub's one tick pings quiet clients (realtime/hub.py).
        ws_ping_interval=None,
        ws_per_message_deflate=False,
        log_level="warning",
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(200):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    runtime: Runtime = app.state.runtime
    tenant = await runtime.tenancy.create_tenant(unique("tenant"))
    created = await runtime.tenancy.create_app(
        tenant.tenant_id, "web", limits=AppLimits(push_rate=100_000, push_burst=100_000)
    )
    live = LiveServer(app, runtime, port, tenant.tenant_id, created, server, task)
    try:
        yield live
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            async with asyncio.timeout(15):
                await task


class Client:
    """A thin WebSocket test client: JSON frames in and out, with a timeout on every read."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def connect(cls, url: str, **kw: Any) -> Client:
        return cls(await websockets.connect(url, max_size=None, compression=None, **kw))

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await self.ws.recv())
                if frame.get("type") != "ping":
                    return frame  # type: ignore[no-any-return]

    async def recv_until(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if frame["type"] == kind:
                    return frame

    async def messages(self, n: int, timeout: float = 15) -> list[dict[str, Any]]:
        out = []
        async with asyncio.timeout(timeout):
            while len(out) < n:
                frame = await self.recv(timeout)
                if frame["type"] == "message":
                    out.append(frame)
        return out

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()
