"""Live servers for the Pusher-compatibility tests, on both backend sets, and the real libraries' drivers.

`live` is parametrised over "single" (SQLite + memory backends) and "full" (MariaDB, Redis, the Kafka
broker and etcd, as a production instance runs). `drivers` starts pusher-js and the server SDKs against
it and stops them after the test; when a test fails, every driver's log (the frames each library saw) is
printed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from pushwire.storage.migrate import upgrade
from pushwire.tenants.views import AppCreated, AppLimits
from tests.live import LiveServer, live_server
from tests.pusher.harness import NodeProcess, NodeServerSdk, PusherApp, PusherJs, PyServerSdk, PysherClient
from tests.services import ETCD_URL, KAFKA_URL, REDIS_URL, unique


@pytest.fixture(scope="session")
def full_stack() -> dict[str, str]:
    """The Kafka topic prefix and the tenant every full-stack test of the session shares.

    The bus has a topic per tenant, created on the tenant's first push and found by a running instance
    some seconds later; sharing one tenant (each test still makes its own apps) pays that once."""
    return {"run": unique("pz")}


def full_env(mysql_url: str, run: str, registry: str) -> dict[str, str]:
    """Settings of a production-like instance: MariaDB, Redis, the Kafka broker and etcd."""
    return {
        "PUSHWIRE_SECRET_KEY": "test-secret-key-0123456789",
        "PUSHWIRE_DATABASE_URL": mysql_url,
        "PUSHWIRE_CACHE_URL": REDIS_URL,
        "PUSHWIRE_BUS_URL": KAFKA_URL,
        "PUSHWIRE_REGISTRY_URL": f"{ETCD_URL}/{registry}",
        "PUSHWIRE_KAFKA_TOPIC_PREFIX": run,
        "PUSHWIRE_KAFKA_PARTITIONS": "2",
        "PUSHWIRE_INSTANCE_ID": unique(run),
    }


async def adopt_shared_tenant(server: LiveServer, full_stack: dict[str, str]) -> None:
    """Points `server` (tenant_id, created) at a new app of the session's shared full-stack tenant."""
    if "tenant" not in full_stack:
        full_stack["tenant"] = server.tenant_id
    server.tenant_id = full_stack["tenant"]
    limits = AppLimits(push_rate=100_000, push_burst=100_000)
    server.created = await server.runtime.tenancy.create_app(server.tenant_id, unique("app"), None, limits)


@pytest.fixture(params=["single", "full"])
async def live(request: pytest.FixtureRequest, tmp_path: Path, full_stack: dict[str, str]) -> AsyncIterator[LiveServer]:
    if request.param == "single":
        url = f"sqlite+aiosqlite:///{tmp_path}/live.db"
        await asyncio.to_thread(upgrade, url)
        env = {"PUSHWIRE_SECRET_KEY": "test-secret-key-0123456789", "PUSHWIRE_DATABASE_URL": url}
    else:
        run = full_stack["run"]
        env = full_env(request.getfixturevalue("mysql_url"), run, unique(run))
    async with live_server(env) as server:
        if request.param == "full":
            await adopt_shared_tenant(server, full_stack)
        yield server


@pytest.fixture
async def pair(mysql_url: str, full_stack: dict[str, str]) -> AsyncIterator[tuple[LiveServer, LiveServer]]:
    """Two full-stack instances of one cluster (same database, cache, bus and registry); `created` is the
    same app on both."""
    run = full_stack["run"]
    registry = unique(run)
    async with (
        live_server(full_env(mysql_url, run, registry)) as a,
        live_server(full_env(mysql_url, run, registry)) as b,
    ):
        await adopt_shared_tenant(a, full_stack)
        b.tenant_id, b.created = a.tenant_id, a.created
        yield a, b


def pusher_app(live: LiveServer, created: AppCreated | None = None) -> PusherApp:
    """The Pusher credentials of an app: app_id, its server key id as `key`, that key's secret."""
    c = created or live.created
    return PusherApp(c.app_id, c.server_key.key_id, c.server_key.secret, "127.0.0.1", live.port)


@pytest.fixture
def app(live: LiveServer) -> PusherApp:
    return pusher_app(live)


class Drivers:
    """Starts the real libraries against the live server; `close()` stops them all."""

    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.nodes: list[NodeProcess] = []
        self.pyshers: list[PysherClient] = []

    async def new_app(self, **limits: int) -> PusherApp:
        limits = {"push_rate": 100_000, "push_burst": 100_000, **limits}
        created = await self.live.runtime.tenancy.create_app(
            self.live.tenant_id, unique("app"), None, AppLimits(**limits)
        )
        return pusher_app(self.live, created)

    async def pusher_js(self, app: PusherApp, name: str = "pusher-js", connect: bool = True, **config: Any) -> PusherJs:
        """pusher-js connected to `app` (waits for `connected` unless connect=False).

        config: presence={"user_id", "user_info"} (presence channel_data), user={"id", ...} (signin),
        encryptionMasterKeyBase64, authKey/authSecret (forge the signature)."""
        client = await PusherJs.start(name, "pusher_js_client.mjs", app.config(**config))
        self.nodes.append(client)
        if connect:
            await client.connected()
        return client

    async def node_sdk(self, app: PusherApp, **config: Any) -> NodeServerSdk:
        sdk = await NodeServerSdk.start("pusher (npm)", "pusher_server.mjs", app.config(**config))
        self.nodes.append(sdk)
        await sdk.find(lambda x: x.get("id") == "started", "SDK start")
        return sdk

    def py_sdk(self, app: PusherApp, **overrides: Any) -> PyServerSdk:
        return PyServerSdk(app, **overrides)

    async def pysher(
        self, app: PusherApp, user_data: dict[str, Any] | None = None, secret: str | None = None
    ) -> PysherClient:
        client = PysherClient(app, user_data=user_data, secret=secret)
        self.pyshers.append(client)
        await client.connect()
        return client

    def report(self) -> str:
        return "\n".join(f"=== {n.name} (pid {n.proc.pid}) ===\n{n.report()}" for n in self.nodes)

    async def close(self) -> None:
        for node in self.nodes:
            await node.close()
        for client in self.pyshers:
            await client.close()


@pytest.fixture
async def drivers(live: LiveServer, request: pytest.FixtureRequest) -> AsyncIterator[Drivers]:
    d = Drivers(live)
    try:
        yield d
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed and d.nodes:
            print("\n--- what the real libraries saw ---\n" + d.report())
        await d.close()
