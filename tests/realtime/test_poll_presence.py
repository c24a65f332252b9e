"""Long-poll and SSE presence: connected only while a request is open (plus a grace), and counted
against the app and per-user connection limits like WebSocket connections."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import websockets

from pushwire.presence import store
from pushwire.storage.models import PresenceRoute
from pushwire.tenants.views import AppCreated
from tests.live import Client, LiveServer


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _poll(
    live: LiveServer, app: AppCreated, user: str, cursor: str | None = None, wait: int = 1
) -> httpx.Response:
    params = {"timeout": str(wait)} | ({"cursor": cursor} if cursor else {})
    async with httpx.AsyncClient(base_url=live.http, timeout=40) as http:
        return await http.get("/api/v1/longpoll", params=params, headers=_auth(live.token(user, created=app)))


async def _ws_close_code(live: LiveServer, app: AppCreated, user: str) -> int | None:
    """None when the connection was welcomed (and is closed again here), else its close code."""
    ws = await websockets.connect(live.ws_url(live.token(user, created=app)))
    try:
        frame = await asyncio.wait_for(ws.recv(), 10)
        assert '"welcome"' in str(frame)
        return None
    except websockets.ConnectionClosed:
        return ws.close_code
    finally:
        await ws.close()


async def _routes(live: LiveServer, app_id: str) -> list[tuple[str, str]]:
    async with live.runtime.backends.database.session() as s:
        rows = await s.execute(
            sa.select(PresenceRoute.user_id, PresenceRoute.transport).where(PresenceRoute.app_id == app_id)
        )
        return sorted((u, t) for u, t in rows)


async def _eventually(check: Any, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)


async def test_finished_polls_leave_and_never_block_other_users(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "POLL_GRACE", 4.0, raising=False)
    monkeypatch.setattr(store, "POLL_REFRESH", 0.5, raising=False)
    app = await live.new_app(max_connections=20, max_connections_per_user=100)
    statuses = []
    for _ in range(30):  # 30 finished first polls of one user, each a new poll session
        r = await _poll(live, app, "a")
        statuses.append(r.status_code)
        if r.status_code != 200:
            assert r.json()["error"] == "connection_limit" and r.json()["message"], r.text
            assert int(r.headers["retry-after"]) >= 1
    # Polls count against the limit like WebSocket connections: the app is full after 20.
    assert statuses == [200] * 20 + [429] * 10
    assert await _ws_close_code(live, app, "b") == 4004
    # The grace passes: the finished polls no longer hold the app's slots, heartbeat or not.
    await _eventually(lambda: _live_count(live, app.app_id, 0), timeout=15)
    await live.runtime.presence.touch_instance(live.runtime.settings.instance_id)
    assert await live.runtime.presence.count(app.app_id) == 0
    assert await _ws_close_code(live, app, "b") is None
    # ... and the periodic sweep removes their routes (the instance heartbeat does not keep them).
    await live.runtime.presence.sweep(dt.timedelta(seconds=60))
    assert ("a", "longpoll") not in await _routes(live, app.app_id)
    async with live.pusher(app) as pw:
        assert (await pw.presence("a"))["online"] is False


async def _live_count(live: LiveServer, app_id: str, want: int) -> bool:
    return await live.runtime.presence.count(app_id) == want


async def test_an_open_poll_keeps_its_slot_and_its_session_continues(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "POLL_GRACE", 1.5, raising=False)
    monkeypatch.setattr(store, "POLL_REFRESH", 0.3, raising=False)
    app = await live.new_app(max_connections=1)
    first = await _poll(live, app, "a")
    assert first.status_code == 200, first.text
    cursor = first.json()["cursor"]
    waiting = asyncio.create_task(_poll(live, app, "a", cursor, wait=6))
    await asyncio.sleep(3)  # twice the grace: the open poll is kept alive by its instance
    r = await _poll(live, app, "c")
    assert (r.status_code, r.json()["error"]) == (429, "connection_limit")
    assert await _ws_close_code(live, app, "b") == 4004
    async with live.pusher(app) as pw:
        p = await pw.presence("a")
        assert p["online"] is True and [c["transport"] for c in p["connections"]] == ["longpoll"]
    done = await waiting
    assert done.status_code == 200
    # The same poll session continues in its own slot, though the app is full.
    again = await _poll(live, app, "a", done.json()["cursor"])
    assert again.status_code == 200, again.text
    await _eventually(lambda: _live_count(live, app.app_id, 0), timeout=10)
    async with await Client.connect(live.ws_url(live.token("b", created=app))) as holder:
        await holder.recv_until("welcome")  # the slot is free again
        # A cursor whose poll session has left holds no slot any more: refused like a new poll.
        late = await _poll(live, app, "a", again.json()["cursor"])
        assert (late.status_code, late.json()["error"]) == (429, "connection_limit")


async def test_sse_streams_count_and_keep_their_route(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "POLL_GRACE", 1.5, raising=False)
    monkeypatch.setattr(store, "POLL_REFRESH", 0.3, raising=False)
    app = await live.new_app(max_connections=1)
    async with httpx.AsyncClient(base_url=live.http, timeout=40) as http:
        headers = _auth(live.token("a", created=app))
        async with http.stream("GET", "/api/v1/sse", headers=headers) as stream:
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            async with asyncio.timeout(10):
                while (await anext(lines)) != "event: welcome":
                    pass
            await asyncio.sleep(3)
            r = await _poll(live, app, "c")
            assert (r.status_code, r.json()["error"]) == (429, "connection_limit")
            refused = await http.get("/api/v1/sse", headers=_auth(live.token("d", created=app)))
            assert (refused.status_code, refused.json()["error"]) == (429, "connection_limit")
            async with live.pusher(app) as pw:
                assert [c["transport"] for c in (await pw.presence("a"))["connections"]] == ["sse"]
    await _eventually(lambda: _live_count(live, app.app_id, 0), timeout=10)
    assert (await _poll(live, app, "c")).status_code == 200


async def test_polls_count_against_the_per_user_limit(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store, "POLL_GRACE", 2.0, raising=False)
    monkeypatch.setattr(store, "POLL_REFRESH", 0.3, raising=False)
    app = await live.new_app(max_connections=100, max_connections_per_user=2)
    first = [await _poll(live, app, "a") for _ in range(2)]
    assert [r.status_code for r in first] == [200, 200]
    third = await _poll(live, app, "a")
    assert (third.status_code, third.json()["error"]) == (429, "connection_limit"), third.text
    assert "per-user" in third.json()["message"]
    assert await _ws_close_code(live, app, "a") == 4004  # WebSocket sees the same count
    assert await _ws_close_code(live, app, "other") is None  # other users are not held back
    # Once the finished polls' grace has passed, the user may poll again.
    await _eventually(lambda: _live_count(live, app.app_id, 0), timeout=10)
    again = await _poll(live, app, "a")
    assert again.status_code == 200, again.text
