"""Open connections end (4001) within seconds when their credentials go: a client key revoked, the
app or the tenant disabled. Single node, on SQLite + memory and on MariaDB + Redis."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest
import websockets

from pushwire.realtime.protocol import Close
from pushwire.tenants.views import AppCreated, ClientKeySecret
from tests.live import Client, LiveServer
from tests.realtime.sse_reader import SseEvents

CLOSE_WITHIN = 5.0  # seconds; the notice is in-process here, so it is really milliseconds


async def closed_with(client: Client, timeout: float = CLOSE_WITHIN) -> tuple[int | None, float]:
    """Read until the server closes; (close code, seconds it took)."""
    t0 = time.monotonic()
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                await client.ws.recv()
    return client.ws.close_code, time.monotonic() - t0


async def welcomed(live: LiveServer, user: str, created: AppCreated | None = None) -> Client:
    client = await Client.connect(live.ws_url(live.token(user, created=created)))
    await client.recv_until("welcome")
    return client


async def still_open(client: Client) -> bool:
    await client.send({"type": "ping"})
    return (await client.recv_until("pong", timeout=5))["type"] == "pong"


async def test_revoking_the_client_key_closes_its_connections(live: LiveServer) -> None:
    other_app = await live.new_app()
    # A second key of the same app: its connections stay.
    second = await live.runtime.tenancy.create_client_key(live.app_id, None)
    assert second.secret
    with_second = AppCreated(live.app_id, live.created.server_key, ClientKeySecret(second.kid, second.secret))
    a, b = await welcomed(live, "u1"), await welcomed(live, "u2")
    kept, elsewhere = await welcomed(live, "u3", with_second), await welcomed(live, "u4", other_app)

    await live.runtime.tenancy.revoke_client_key(live.created.client_key.kid, live.app_id, live.tenant_id)

    for client in (a, b):
        code, took = await closed_with(client)
        assert code == Close.UNAUTHORIZED and took < CLOSE_WITHIN
    assert await still_open(kept) and await still_open(elsewhere)
    # The key cache was invalidated too: a new connection with the revoked key is refused at once
    # (before, the 30 s cache kept accepting it).
    with pytest.raises(websockets.InvalidStatus) as refused:
        await Client.connect(live.ws_url(live.token("u1")))
    assert refused.value.response.status_code == 401
    await kept.close()
    await elsewhere.close()


@pytest.mark.parametrize("switch", ["app", "tenant"])
async def test_disabling_the_app_or_tenant_closes_its_connections(live: LiveServer, switch: str) -> None:
    client = await welcomed(live, "u1")
    tenancy = live.runtime.tenancy
    disable: Callable[[], Awaitable[object]]
    if switch == "app":
        disable = lambda: tenancy.update_app(live.app_id, live.tenant_id, enabled=False)  # noqa: E731
    else:
        disable = lambda: tenancy.set_tenant_disabled(live.tenant_id, True)  # noqa: E731
    await disable()
    code, _ = await closed_with(client)
    assert code == Close.UNAUTHORIZED
    with pytest.raises(websockets.InvalidStatus):
        await Client.connect(live.ws_url(live.token("u1")))


async def test_changes_that_keep_credentials_keep_connections(live: LiveServer) -> None:
    client = await welcomed(live, "u1")
    tenancy = live.runtime.tenancy
    applied = live.runtime.revocation.applied
    await tenancy.revoke_server_key(live.created.server_key.key_id, live.tenant_id)
    app = await tenancy.get_app(live.app_id, None)
    await tenancy.update_app(live.app_id, None, origins=["https://x.example.com"], limits=app.limits)
    async with asyncio.timeout(5):
        while live.runtime.revocation.applied < applied + 2:
            await asyncio.sleep(0.02)
    assert await still_open(client)
    await client.close()


async def test_a_malformed_notice_is_ignored(live: LiveServer) -> None:
    client = await welcomed(live, "u1")
    applied = live.runtime.revocation.applied
    await live.runtime.backends.registry.put(f"changes/apps/{live.app_id}", b"not a notice")
    await asyncio.sleep(0.3)
    assert live.runtime.revocation.applied == applied
    assert await still_open(client)
    await client.close()


async def test_an_sse_stream_ends_on_the_revocation_notice_alone(live: LiveServer) -> None:
    """No message wakes the stream: the revocation notice itself ends it, with the reconnect event."""
    token = live.token("rev-sse-notice")
    async with (
        httpx.AsyncClient(base_url=live.http, headers={"Authorization": f"Bearer {token}"}, timeout=40) as http,
        http.stream("GET", "/api/v1/sse") as response,
    ):
        events = SseEvents(response)
        await events.until("welcome")
        t0 = time.monotonic()
        await live.runtime.tenancy.revoke_client_key(live.created.client_key.kid, live.app_id, live.tenant_id)
        last = await events.until("reconnect", timeout=CLOSE_WITHIN)
        assert json.loads(last["data"])["code"] == Close.UNAUTHORIZED
        assert await events.next() is None and time.monotonic() - t0 < CLOSE_WITHIN
