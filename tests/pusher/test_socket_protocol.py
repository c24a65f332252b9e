"""The Pusher WebSocket endpoint frame by frame, under real uvicorn on both backend sets: what the
libraries rely on (tests/pusher/test_pusher_js.py drives them), and every refusal with its code."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import websockets

from pushwire.errors import BackendUnavailable
from pushwire.messaging.publish import PublishRequest, PublishResult
from pushwire.pusher.members import Member, members_key
from pushwire.tenants.views import AppCreated
from tests.live import LiveServer, backend_env, live_server


@pytest.fixture(params=["single", "mariadb+redis"])
async def live(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LiveServer]:
    env = await backend_env(request, tmp_path, PUSHWIRE_HEARTBEAT="25")
    async with live_server(env) as server:
        yield server


class Socket:
    def __init__(self, ws: websockets.ClientConnection, socket_id: str, key: str, secret: str) -> None:
        self.ws, self.socket_id, self.key, self.secret = ws, socket_id, key, secret

    @classmethod
    async def open(cls, live: LiveServer, created: AppCreated | None = None, query: str = "protocol=7") -> Socket:
        c = created or live.created
        ws = await websockets.connect(f"ws://127.0.0.1:{live.port}/app/{c.server_key.key_id}?{query}")
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["event"] == "pusher:connection_established", first
        data = json.loads(first["data"])
        assert data["activity_timeout"] == 25
        return cls(ws, data["socket_id"], c.server_key.key_id, c.server_key.secret)

    def auth(self, text: str) -> str:
        return f"{self.key}:" + hmac.new(self.secret.encode(), text.encode(), hashlib.sha256).hexdigest()

    async def send(self, event: str, data: Any = None, channel: str | None = None) -> None:
        frame: dict[str, Any] = {"event": event, "data": data if data is not None else {}}
        if channel is not None:
            frame["channel"] = channel
        await self.ws.send(json.dumps(frame))

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))  # type: ignore[no-any-return]

    async def until(self, event: str, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if frame["event"] == event:
                    return frame

    async def subscribe(self, channel: str, channel_data: str | None = None, auth: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {"channel": channel, "auth": auth or ""}
        if auth is None and channel.startswith(("private-", "presence-")):
            signed = f"{self.socket_id}:{channel}" + (f":{channel_data}" if channel_data is not None else "")
            data["auth"] = self.auth(signed)
        if channel_data is not None:
            data["channel_data"] = channel_data
        await self.send("pusher:subscribe", data)
        return await self.recv()

    async def close(self) -> None:
        await self.ws.close()


async def _refused(url: str) -> tuple[dict[str, Any], int | None]:
    async with websockets.connect(url) as ws:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        return frame, ws.close_code


async def test_refusals_are_an_error_frame_then_the_same_close_code(live: LiveServer) -> None:
    base = f"ws://127.0.0.1:{live.port}/app"
    key = live.created.server_key.key_id
    for url, code in (
        (f"{base}/sk_00000000000000000000?protocol=7", 4001),
        (f"{base}/nope?protocol=7", 4001),
        (f"{base}/{key}", 4008),
        (f"{base}/{key}?protocol=3", 4007),
        (f"{base}/{key}?protocol=x", 4007),
    ):
        frame, closed = await _refused(url)
        assert frame["event"] == "pusher:error" and frame["data"]["code"] == code and closed == code, (url, frame)
    await live.runtime.tenancy.update_app(live.app_id, live.tenant_id, enabled=False)
    frame, closed = await _refused(f"{base}/{key}?protocol=7")
    assert frame["data"]["code"] == 4003 and closed == 4003


async def test_connection_limit_is_4004_and_the_first_connection_stays(live: LiveServer) -> None:
    small = await live.new_app(max_connections=1)
    first = await Socket.open(live, small)
    frame, closed = await _refused(f"ws://127.0.0.1:{live.port}/app/{small.server_key.key_id}?protocol=7")
    assert frame["data"]["code"] == 4004 and closed == 4004
    await first.send("pusher:ping")
    assert (await first.recv())["event"] == "pusher:pong"
    await first.close()


async def test_protocol_6_ping_before_anything_and_public_subscribe(live: LiveServer) -> None:
    s = await Socket.open(live, query="client=Pysher&version=0.6.0&protocol=6")
    await s.ws.send('{"event": "pusher:ping", "data": ""}')
    assert (await s.recv()) == {"event": "pusher:pong", "data": {}}
    await s.ws.send('{"event": "pusher:subscribe", "data": {"channel": "room.a"}}')
    assert await s.recv() == {"event": "pusher_internal:subscription_succeeded", "channel": "room.a", "data": "{}"}
    async with live.pusher() as api:
        await api.push(channels=["room.a"], event="hello", data={"t": "a/b"})
    got = await s.recv()
    assert got == {"event": "hello", "channel": "room.a", "data": '{"t":"a/b"}'}
    await s.close()


async def test_bad_frames_get_errors_and_the_connection_stays_until_the_budget(live: LiveServer) -> None:
    s = await Socket.open(live)
    for bad in ("not json", '{"data":{}}', '{"event":"pusher:subscribe","data":{"nochannel":1}}', '{"event":"x"}'):
        await s.ws.send(bad)
        frame = await s.recv()
        assert frame["event"] == "pusher:error" and frame["data"]["code"] is None, (bad, frame)
    await s.ws.send(b"binary")
    assert (await s.recv())["event"] == "pusher:error"
    for _ in range(6):
        await s.ws.send("garbage")
    with pytest.raises(websockets.ConnectionClosed):
        for _ in range(20):
            await s.recv()
    assert s.ws.close_code == 4100  # back off, then reconnect (Pusher's 41xx)


async def test_oversized_frame_closes_1009(live: LiveServer) -> None:
    s = await Socket.open(live)
    await s.ws.send("x" * (64 * 1024 + 1))
    with pytest.raises(websockets.ConnectionClosed):
        await s.recv()
    assert s.ws.close_code == 1009


async def test_private_channel_auth_is_checked_and_a_forgery_is_told(live: LiveServer) -> None:
    s = await Socket.open(live)
    ok = await s.subscribe("private-x")
    assert ok["event"] == "pusher_internal:subscription_succeeded"
    for auth in ("", "nokey", f"{s.key}:{'0' * 64}", s.auth("1.1:private-y")):
        refused = await s.subscribe("private-y", auth=auth)
        assert refused["event"] == "pusher:subscription_error", auth
        assert refused["data"]["type"] == "AuthError" and refused["data"]["status"] == 401
    other = await live.new_app()
    forged = (
        f"{other.server_key.key_id}:"
        + hmac.new(other.server_key.secret.encode(), f"{s.socket_id}:private-z".encode(), hashlib.sha256).hexdigest()
    )
    assert (await s.subscribe("private-z", auth=forged))["event"] == "pusher:subscription_error"
    for name in ("broadcast", "user.me", "a:b", "x" * 170):
        refused = await s.subscribe(name)
        assert refused["event"] == "pusher:subscription_error" and refused["data"]["status"] == 4009, name
    await s.close()


async def test_presence_members_counts_and_leaves(live: LiveServer) -> None:
    a, b, b2 = await Socket.open(live), await Socket.open(live), await Socket.open(live)
    joined = await a.subscribe("presence-r", json.dumps({"user_id": "u1", "user_info": {"name": "Ann"}}))
    assert json.loads(joined["data"])["presence"] == {"ids": ["u1"], "hash": {"u1": {"name": "Ann"}}, "count": 1}
    second = await b.subscribe("presence-r", '{"user_id":2}')
    presence = json.loads(second["data"])["presence"]
    assert presence["count"] == 2 and set(presence["ids"]) == {"u1", "2"}
    added = await a.until("pusher_internal:member_added")
    assert json.loads(added["data"])["user_id"] == "2"
    again = await b2.subscribe("presence-r", '{"user_id":2}')  # the same user on another connection
    assert json.loads(again["data"])["presence"]["count"] == 2
    assert await live.runtime.pusher.members(live.app_id, "presence-r") == {"u1": {"name": "Ann"}, "2": None}
    await b.close()
    await b2.close()
    removed = await a.until("pusher_internal:member_removed")
    assert json.loads(removed["data"]) == {"user_id": "2"}
    assert await live.runtime.pusher.members(live.app_id, "presence-r") == {"u1": {"name": "Ann"}}
    for bad in ("", "not json", '{"user_info":{}}', json.dumps({"user_id": "u", "user_info": {"x": "y" * 1100}})):
        c = await Socket.open(live)
        refused = await c.subscribe("presence-r", bad)
        assert refused["event"] == "pusher:subscription_error", bad
        await c.close()
    await a.close()


async def test_a_join_finds_and_announces_members_of_a_departed_instance(live: LiveServer) -> None:
    """An entry of an instance no longer registered (one that crashed): gone from every list, and
    the first join that meets it tells the channel's members."""
    a = await Socket.open(live)
    assert (await a.subscribe("presence-d", '{"user_id":"u1"}'))["event"] == "pusher_internal:subscription_succeeded"
    ghost = msgspec.json.encode(Member("crashed-instance", "ghost"))
    await live.runtime.backends.cache.hash_set(members_key(live.app_id, "presence-d"), {"9.9": ghost})
    assert await live.runtime.pusher.members(live.app_id, "presence-d") == {"u1": None}
    c = await Socket.open(live)
    joined = await c.subscribe("presence-d", '{"user_id":"u3"}')
    assert json.loads(joined["data"])["presence"]["ids"] == ["u1", "u3"]
    assert json.loads((await a.until("pusher_internal:member_added"))["data"])["user_id"] == "u3"
    assert json.loads((await a.until("pusher_internal:member_removed"))["data"]) == {"user_id": "ghost"}
    assert "9.9" not in await live.runtime.backends.cache.hash_get_all(members_key(live.app_id, "presence-d"))
    await a.close()
    await c.close()


async def test_member_events_wait_out_a_database_outage_in_order(live: LiveServer) -> None:
    """Joins and leaves during an outage reach the other members once it ends, in order."""
    announcer = live.runtime.pusher.sockets.announcer
    publish, down = announcer.publish, [True]

    async def outage(tenant_id: str, app_id: str, request: PublishRequest) -> PublishResult:
        if down[0]:
            raise BackendUnavailable("database", "outage")
        return await publish(tenant_id, app_id, request)

    announcer.publish = outage
    a, b = await Socket.open(live), await Socket.open(live)
    assert (await a.subscribe("presence-o", '{"user_id":"u1"}'))["event"] == "pusher_internal:subscription_succeeded"
    assert (await b.subscribe("presence-o", '{"user_id":"u2"}'))["event"] == "pusher_internal:subscription_succeeded"
    await b.close()
    async with asyncio.timeout(10):  # u1 and u2 added, u2 removed: all waiting
        while len(announcer.pending) < 3:
            await asyncio.sleep(0.02)
    assert await live.runtime.pusher.members(live.app_id, "presence-o") == {"u1": None}  # the cache is right
    down[0] = False
    added = await a.until("pusher_internal:member_added")  # a's own join skips a
    removed = await a.until("pusher_internal:member_removed")
    assert json.loads(added["data"])["user_id"] == json.loads(removed["data"])["user_id"] == "u2"
    assert announcer.retried == 3 and not announcer.pending
    await a.close()


async def test_client_events_reach_others_never_the_sender_and_are_limited(live: LiveServer) -> None:
    a, b = await Socket.open(live), await Socket.open(live)
    await a.subscribe("private-chat")
    await b.subscribe("private-chat")
    await b.send("client-typing", {"who": "b"}, "private-chat")
    got = await a.recv()
    assert got == {"event": "client-typing", "channel": "private-chat", "data": {"who": "b"}}
    await b.subscribe("room.pub")
    await b.send("client-x", {}, "room.pub")
    refused = await b.recv()
    assert refused["event"] == "pusher:error" and refused["data"]["code"] == 4301 and refused["channel"] == "room.pub"
    await b.send("client-x", {}, "private-not-subscribed")
    assert (await b.recv())["data"]["code"] == 4301
    await b.send("client-big", {"x": "y" * 10_300}, "private-chat")
    assert (await b.recv())["data"]["code"] == 4301
    for i in range(12):  # 10 a second
        await b.send("client-n", {"i": i}, "private-chat")
    limited = await b.until("pusher:error")
    assert limited["data"]["code"] == 4301 and limited["channel"] == "private-chat"
    seen = []
    with pytest.raises(TimeoutError):
        while True:
            seen.append((await a.recv(timeout=1.5))["data"]["i"])
    assert 8 <= len(seen) <= 11 and seen == sorted(seen)
    await a.close()
    await b.close()


async def test_trigger_socket_id_excludes_only_that_connection(live: LiveServer) -> None:
    a, b = await Socket.open(live), await Socket.open(live)
    await a.subscribe("room.t")
    await b.subscribe("room.t")
    import msgspec

    from pushwire.messaging.publish import PublishRequest

    request = PublishRequest(channels=("room.t",), event="e", data=msgspec.Raw(b'"1"'), socket_id=a.socket_id)
    await live.runtime.group_commit.publish(live.tenant_id, live.app_id, request)
    live.runtime.notify_published()
    assert (await b.recv())["data"] == "1"
    with pytest.raises(TimeoutError):
        await a.recv(timeout=1)
    await a.close()
    await b.close()


async def test_signin_server_to_user_and_terminate(live: LiveServer) -> None:
    s = await Socket.open(live)
    refused = await s.subscribe("#server-to-user-42")
    assert refused["event"] == "pusher:subscription_error"
    user_data = '{"id":"42"}'
    await s.send("pusher:signin", {"auth": s.auth(f"{s.socket_id}::user::{user_data}"), "user_data": user_data})
    ok = await s.recv()
    assert ok == {"event": "pusher:signin_success", "data": {"user_data": user_data}}
    assert (await s.subscribe("#server-to-user-42"))["event"] == "pusher_internal:subscription_succeeded"
    async with live.pusher() as api:
        await api.push(users=["42"], event="note", data={"n": 1})
    assert await s.recv() == {"event": "note", "channel": "#server-to-user-42", "data": '{"n":1}'}
    await live.runtime.pusher.terminate(live.app_id, "42")
    assert (await s.until("pusher:error"))["data"]["code"] == 4009
    with pytest.raises(websockets.ConnectionClosed):
        await s.recv()
    assert s.ws.close_code == 4009
    bad = await Socket.open(live)
    await bad.send("pusher:signin", {"auth": f"{bad.key}:{'0' * 64}", "user_data": user_data})
    assert (await bad.recv())["data"]["code"] == 4009
    with pytest.raises(websockets.ConnectionClosed):
        await bad.recv()
    assert bad.ws.close_code == 4009


async def test_cache_channel_last_event_or_cache_miss(live: LiveServer) -> None:
    s = await Socket.open(live)
    await s.subscribe("cache-c")
    assert await s.recv() == {"event": "pusher:cache_miss", "channel": "cache-c"}
    async with live.pusher() as api:
        await api.push(channels=["cache-c"], event="price", data="42")
    assert (await s.recv())["event"] == "price"
    late = await Socket.open(live)
    await late.subscribe("cache-c")
    assert await late.recv() == {"event": "price", "channel": "cache-c", "data": "42"}
    await s.close()
    await late.close()


async def test_revoking_the_key_closes_its_connections_4001(live: LiveServer) -> None:
    s = await Socket.open(live)
    await live.runtime.tenancy.revoke_server_key(live.created.server_key.key_id, live.tenant_id)
    assert (await s.until("pusher:error"))["data"]["code"] == 4001
    with pytest.raises(websockets.ConnectionClosed):
        await s.recv()
    assert s.ws.close_code == 4001


async def test_two_apps_share_channel_names_and_never_see_each_other(live: LiveServer) -> None:
    other = await live.new_app()
    a, b = await Socket.open(live), await Socket.open(live, other)
    await a.subscribe("room.same")
    await b.subscribe("room.same")
    async with live.pusher(other) as api:
        await api.push(channels=["room.same"], event="for-b", data=1)
    assert (await b.recv())["event"] == "for-b"
    with pytest.raises(TimeoutError):
        await a.recv(timeout=1)
    assert await live.runtime.pusher.occupied(live.app_id) == {"room.same": 1}
    await a.close()
    await b.close()


async def test_plain_http_to_the_socket_path_is_426(live: LiveServer) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=live.http) as http:
        response = await http.get(f"/app/{live.created.server_key.key_id}?protocol=7")
    assert response.status_code == 426 and response.json()["error"] == "upgrade_required"
