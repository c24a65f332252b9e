"""Long-poll and SSE: read notices delivered, the live heartbeat used, a stream ended when its
credentials no longer hold."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import sqlalchemy as sa

from pushwire.storage.dialect import utcnow
from pushwire.storage.models import ClientKey
from tests.live import Client, LiveServer
from tests.realtime.sse_reader import SseEvents


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _hub_has_poll(live: LiveServer, user: str) -> None:
    async with asyncio.timeout(5):
        while not any(s.user_id == user and s.transport.kind != "ws" for s in live.runtime.hub.sessions.values()):
            await asyncio.sleep(0.02)


async def test_a_waiting_long_poll_returns_the_read_notice(live: LiveServer) -> None:
    token = live.token("rd1")
    async with (
        httpx.AsyncClient(base_url=live.http, headers=_auth(token), timeout=40) as http,
        live.pusher() as pw,
        await Client.connect(live.ws_url(token)) as other,
    ):
        await other.recv_until("welcome")
        await pw.push(users=["rd1"], event="e", data=1)
        await pw.push(users=["rd1"], event="e", data=2)
        await other.messages(2)
        first = (await http.get("/api/v1/longpoll", params={"timeout": "1"})).json()
        assert [m["offset"] for m in first["messages"]] == [1, 2] and "reads" not in first
        poll = asyncio.create_task(http.get("/api/v1/longpoll", params={"cursor": first["cursor"], "timeout": "20"}))
        await _hub_has_poll(live, "rd1")
        started = time.monotonic()
        await other.send({"type": "ack", "channel": "user.rd1", "offset": 2})  # the other device read them
        body = (await poll).json()
        assert time.monotonic() - started < 10
        assert body["reads"] == [{"channel": "user.rd1", "offset": 2}]
        assert body["messages"] == [] and body["cursor"]
        # the read notice moves no position: the same cursor answers the same way
        r = await http.post("/api/v1/ack", json={"channel": "user.rd1", "offset": 1})
        assert r.json()["offset"] == 2  # cumulative


async def test_sse_sends_read_events(live: LiveServer) -> None:
    token = live.token("rd2")
    async with (
        httpx.AsyncClient(base_url=live.http, headers=_auth(token), timeout=40) as http,
        live.pusher() as pw,
        await Client.connect(live.ws_url(token)) as other,
        http.stream("GET", "/api/v1/sse") as response,
    ):
        events = SseEvents(response)
        await events.until("welcome")
        await other.recv_until("welcome")
        await pw.push(users=["rd2"], event="e", data=1)
        message = await events.until("message")
        [m] = await other.messages(1)
        # Read notices are live only: the stream's next poll is listening before the other acks.
        await _hub_has_poll(live, "rd2")
        await other.send({"type": "ack", "channel": "user.rd2", "offset": m["offset"]})
        read = await events.until("read")
        assert json.loads(read["data"]) == {"type": "read", "channel": "user.rd2", "offset": 1}
        assert "id" not in read  # a read notice moves no position: Last-Event-ID stays the message's
        assert message["id"]
        await events.close()


async def test_sse_keep_alive_follows_the_live_heartbeat(live: LiveServer) -> None:
    await live.runtime.config.put("heartbeat", 1)
    try:
        async with asyncio.timeout(5):
            while live.runtime.heartbeat != 1:
                await asyncio.sleep(0.05)
        assert live.runtime.settings.heartbeat == 25
        token = live.token("hb")
        async with (
            httpx.AsyncClient(base_url=live.http, headers=_auth(token), timeout=40) as http,
            http.stream("GET", "/api/v1/sse") as response,
        ):
            events = SseEvents(response)
            await events.until("welcome")
            started = time.monotonic()
            async with asyncio.timeout(10):
                while events.comments < 4:
                    await events.next(10)
            assert time.monotonic() - started < 8  # one a second, not one per 25 s
            await events.close()
    finally:
        # The registry may outlive this server (etcd): leave the heartbeat as it was.
        await live.runtime.backends.registry.delete("config/heartbeat")


async def test_sse_ends_when_the_token_expires(live: LiveServer) -> None:
    live.runtime.tokens.leeway = 1.0
    exp = int(time.time()) + 2  # mint_token: exp = now (whole seconds) + ttl
    token = live.token("exp-sse", ttl=2)
    async with (
        httpx.AsyncClient(base_url=live.http, headers=_auth(token), timeout=40) as http,
        http.stream("GET", "/api/v1/sse") as response,
    ):
        events = SseEvents(response)
        await events.until("welcome")
        last = await events.until("reconnect", timeout=20)
        assert json.loads(last["data"])["code"] == 4001
        assert time.time() >= exp + 1 - 0.5  # not before exp + leeway
        assert await events.next() is None  # the stream ended


async def test_sse_ends_when_the_key_is_revoked(live: LiveServer) -> None:
    token = live.token("rev-sse")
    async with (
        httpx.AsyncClient(base_url=live.http, headers=_auth(token), timeout=40) as http,
        http.stream("GET", "/api/v1/sse") as response,
    ):
        events = SseEvents(response)
        await events.until("welcome")
        async with live.runtime.backends.database.session() as s:
            await s.execute(
                sa.update(ClientKey).where(ClientKey.kid == live.created.client_key.kid).values(revoked_at=utcnow())
            )
            await s.commit()
        live.runtime.tokens.invalidate(live.app_id)  # what the revocation does on every instance
        async with live.pusher() as pw:
            await pw.push(users=["rev-sse"], event="e", data=1)  # wakes the stream's loop
        last = await events.until("reconnect", timeout=40)
        assert json.loads(last["data"]) == {"code": 4001, "reason": "key revoked"}
        assert await events.next() is None
