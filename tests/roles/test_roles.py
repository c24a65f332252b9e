"""Each role built alone, on both backend sets: a relay role relays what a runtime without a relay
commits; the API and the realtime roles start, serve and stop without the others."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa

from pushwire.messaging.publish import PublishRequest
from pushwire.messaging.relay import IDLE_POLL
from pushwire.registry.config import PREFIX
from pushwire.roles.api import ApiRole
from pushwire.roles.realtime import RealtimeRole
from pushwire.roles.relay import RelayRole
from pushwire.roles.shared import Shared
from pushwire.settings import Settings, load_settings
from pushwire.storage.database import Database
from pushwire.storage.dialect import table_of
from pushwire.storage.models import OutboxEntry
from pushwire.tracing.provider import Tracing
from tests.live import Client, LiveServer, backend_env, live_server
from tests.services import unique


@pytest.fixture(params=["single", "mariadb+redis"])
async def no_relay(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LiveServer]:
    env = await backend_env(request, tmp_path)
    async with live_server(env, relay=False) as server:
        yield server


@pytest.fixture(params=["single", "mariadb+redis"])
async def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return load_settings(await backend_env(request, tmp_path))


async def _outbox(db: Database, app_id: str) -> int:
    outbox = table_of(OutboxEntry)
    async with db.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(outbox).where(outbox.c.app_id == app_id)
        return int((await conn.execute(query)).scalar() or 0)


def _req(channel: str, data: int) -> PublishRequest:
    return PublishRequest(channels=(channel,), event="e", data=msgspec.Raw(str(data).encode()))


async def test_a_relay_role_built_alone_relays_what_a_runtime_without_relay_commits(no_relay: LiveServer) -> None:
    live, rt = no_relay, no_relay.runtime
    assert rt.relay is None and rt.publisher.handoff is None
    async with await Client.connect(live.ws_url(live.token("u1"))) as client:
        await client.recv_until("welcome")
        async with live.pusher() as pusher:
            await pusher.push(users=["u1"], event="e", data=1)  # signed, through the API
        with pytest.raises(TimeoutError):
            await client.messages(1, timeout=1.0)  # no relay anywhere yet: the row waits
        assert await _outbox(rt.backends.database, live.app_id) == 1

        # Its own tracing over the same backends: all a relay needs.
        role = RelayRole.build(rt.settings, rt.backends, Tracing(rt.settings, rt.backends.cache))
        await role.start()
        try:
            [first] = await client.messages(1)
            await rt.publisher.publish(live.tenant_id, live.app_id, _req("user.u1", 2))
            rt.notify_published()  # no relay here to wake: the role finds the row by polling
            [second] = await client.messages(1)
            assert [(m["offset"], m["data"]) for m in (first, second)] == [(1, 1), (2, 2)]
            # Counted after the DELETE commits (after the bus has them): an empty outbox alone can
            # be seen a moment before the count moves.
            async with asyncio.timeout(10):
                while await _outbox(rt.backends.database, live.app_id) or role.relay.published < 2:
                    await asyncio.sleep(0.02)
            assert role.relay.published == 2 and role.relay.handed_sent == 0
            # Handed nothing, it polls at the cluster cadence even as the only registered instance.
            assert role.relay._poll_every == IDLE_POLL
        finally:
            await role.stop()
        assert not role.relay.shards  # freed for the next relay


async def test_the_api_role_runs_alone(settings: Settings) -> None:
    shared = Shared.build(settings)
    api = ApiRole.build(shared)
    await shared.start()
    await api.start()
    try:
        tenant = await api.tenancy.create_tenant(unique("t-"))
        created = await api.tenancy.create_app(tenant.tenant_id, "web")
        result = await api.group_commit.publish(tenant.tenant_id, created.app_id, _req("room.a", 7))
        assert [(d.channel, d.offset) for d in result.deliveries] == [("room.a", 1)]
        page = await api.history.read(created.app_id, "room.a", 0, 10)
        assert [(m.offset, bytes(m.data)) for m in page.messages] == [(1, b"7")]
        # No relay in this process: the row stays in the outbox for one elsewhere.
        assert await _outbox(shared.backends.database, created.app_id) == 1
        assert api.push_enabled is True
    finally:
        await api.stop()
        await shared.stop()


async def test_the_realtime_role_runs_alone(settings: Settings) -> None:
    shared = Shared.build(settings)
    realtime = RealtimeRole.build(shared)
    await shared.start()
    await realtime.start()
    try:
        [liveness] = realtime._tasks
        # The role's own config listener: a live heartbeat reaches its connections.
        await shared.config.put("heartbeat", 9)
        async with asyncio.timeout(5):
            while realtime.connections.heartbeat != 9:
                await asyncio.sleep(0.02)
        assert realtime.heartbeat == 9
        await asyncio.sleep(1.2)  # a liveness tick or two, with no registry entry to refresh
        assert not liveness.done()
    finally:
        # The single node's registry engine is per process: leave no config for later tests.
        await shared.backends.registry.delete(PREFIX + "heartbeat")
        await realtime.stop()
        await shared.stop()
    assert liveness.cancelled()


def test_the_relay_role_imports_neither_the_api_nor_the_realtime_code() -> None:
    """What `pushwire relay` loads: no Litestar, no client-facing code."""
    probe = (
        "import sys, pushwire.roles.relay; "
        "print(sorted(m for m in sys.modules if m.startswith(('litestar', 'pushwire.realtime', 'pushwire.api'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_the_relay_command_exits_2_with_one_line_when_a_backend_is_down(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
    env.update(PUSHWIRE_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/r.db", PUSHWIRE_CACHE_URL="redis://127.0.0.1:1/0")
    p = subprocess.run([sys.executable, "-m", "pushwire", "relay"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith("pushwire: PUSHWIRE_CACHE_URL: cache unreachable") and len(p.stderr.splitlines()) == 1
