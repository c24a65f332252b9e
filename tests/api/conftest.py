"""A running app per backend set: single-node (SQLite + memory) and MariaDB + Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from litestar import Litestar

from pushwire.app import create_app
from pushwire.runtime import Runtime
from pushwire.sdk import AsyncServerClient
from pushwire.settings import load_settings
from pushwire.tenants.views import AppCreated
from tests.live import backend_env
from tests.services import unique


@dataclass
class Stack:
    app: Litestar
    runtime: Runtime
    tenant_id: str
    created: AppCreated

    def client(
        self, key_id: str | None = None, secret: str | None = None, peer: str = "127.0.0.1"
    ) -> AsyncServerClient:
        """An SDK client whose requests arrive from `peer` (the direct TCP peer the server sees)."""
        transport = httpx.ASGITransport(app=self.app, client=(peer, 40000))
        return AsyncServerClient(
            "http://pushwire.test",
            key_id or self.created.server_key.key_id,
            secret or self.created.server_key.secret,
            transport=transport,
        )

    def raw(self, peer: str = "127.0.0.1") -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=(peer, 40000)), base_url="http://pushwire.test"
        )

    async def new_app(self, **limits: int) -> AppCreated:
        from pushwire.tenants.views import AppLimits

        return await self.runtime.tenancy.create_app(self.tenant_id, unique("app"), limits=AppLimits(**limits))


@pytest.fixture(params=["single", "mariadb+redis"])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stack]:
    env = await backend_env(request, tmp_path, PUSHWIRE_TRUSTED_PROXIES="10.9.0.0/16")
    app = create_app(load_settings(env))
    runtime: Runtime = app.state.runtime
    # The runtime is started in the test's own loop (the lifespan would run it in the test
    # client's portal thread, and pooled MySQL connections belong to one loop).
    await runtime.start()
    try:
        tenant = await runtime.tenancy.create_tenant(unique("tenant"))
        created = await runtime.tenancy.create_app(tenant.tenant_id, "web")
        yield Stack(app=app, runtime=runtime, tenant_id=tenant.tenant_id, created=created)
    finally:
        await runtime.stop()


Factory = Callable[..., AsyncServerClient]
