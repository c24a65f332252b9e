"""The realtime client SDK against a live server, on both backend sets: delivery, reconnect with
resume, duplicates, acks, explicit gaps, token renewal, and the long-poll transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from pushwire.messaging.hot_history import hot_key
from pushwire.sdk.realtime import RealtimeClient
from pushwire.storage.migrate import upgrade
from pushwire.storage.models import Message
from tests.live import LiveServer, live_server


async def take(client: RealtimeClient, n: int, timeout: float = 15) -> list[dict[str, Any]]:
    it: AsyncIterator[dict[str, Any]] = client.messages()
    out = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.append(await anext(it))
    return out


async def nothing_more(client: RealtimeClient, wait: float = 0.5) -> None:
    await asyncio.sleep(wait)
    assert client._queue.empty(), [client._queue.get_nowait() for _ in range(client._queue.qsize())]


def by_channel(messages: list[dict[str, Any]], channel: str) -> list[int]:
    return [m["offset"] for m in messages if m["channel"] == channel]


async def eventually(check: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def test_personal_and_room_messages_over_ws_in_order(live: LiveServer) -> None:
    client = RealtimeClient(live.http, live.token("s1", ["room.*"]), channels=["room.a"])
    async with client, live.pusher() as pw:
        assert client.transport == "ws"
        assert client.welcome is not None and client.welcome["user"] == "s1"
        sub = await client.subscribe("room.a")
        assert sub is not None and sub["recovered"] is False and sub["offset"] == 0
        for i in range(1, 6):
            await pw.push(users=["s1"], event="p", data=i)
            await pw.push(channels=["room.a"], event="r", data=i)
        got = await take(client, 10)
        assert by_channel(got, "user.s1") == [1, 2, 3, 4, 5]
        assert by_channel(got, "room.a") == [1, 2, 3, 4, 5]
        assert [m["data"] for m in got if m["channel"] == "room.a"] == [1, 2, 3, 4, 5]
        await pw.push(broadcast=True, event="b", data="all")
        [b] = await take(client, 1)
        assert (b["channel"], b["data"]) == ("broadcast", "all")
        await nothing_more(client)


async def test_reconnects_on_its_own_and_resumes_with_since(live: LiveServer) -> None:
    client = RealtimeClient(live.http, live.token("s2", ["room.*"]), channels=["room.r"], backoff_max=0.5)
    async with client, live.pusher() as pw:
        await client.subscribe("room.r")
        for i in range(1, 4):
            await pw.push(channels=["room.r"], event="r", data=i)
        await pw.push(users=["s2"], event="p", data=1)
        await pw.push(broadcast=True, event="b", data=1)
        got = await take(client, 5)
        # The instance drains: sessions closed with 4500, new upgrades refused with 503.
        live.runtime.draining = True
        for s in list(live.runtime.hub.sessions.values()):
            s.close_soon(4500, "test")
        await eventually(lambda: _async(client.transport is None))
        await pw.push_batch([{"channels": ["room.r"], "event": "r", "data": i} for i in range(4, 21)])
        await pw.push_batch([{"users": ["s2"], "event": "p", "data": i} for i in range(2, 5)])
        await pw.push(broadcast=True, event="b", data=2)
        await asyncio.sleep(0.5)
        live.runtime.draining = False
        got += await take(client, 17 + 3 + 1)
        assert client.connects == 2 and client.transport == "ws"
        resumed = client.recovered["room.r"]
        assert (resumed["recovered"], resumed["replayed"], resumed["offset"]) == (True, 17, 20)
        await pw.push(channels=["room.r"], event="r", data=21)
        got += await take(client, 1)
        assert by_channel(got, "room.r") == list(range(1, 22))
        assert [m["data"] for m in got if m["channel"] == "room.r"] == list(range(1, 22))
        assert by_channel(got, "user.s2") == [1, 2, 3, 4]  # unread replay resent 1: dropped
        assert by_channel(got, "broadcast") == [1, 2]  # broadcast resumed with since as well
        assert client.duplicates >= 1
        assert client.gaps == []
        await nothing_more(client)


async def _async(value: bool) -> bool:
    return value


async def test_duplicates_are_dropped(live: LiveServer) -> None:
    client = RealtimeClient(live.http, live.token("s3"))
    async with client, live.pusher() as pw:
        await pw.push(users=["s3"], event="p", data=1)
        [first] = await take(client, 1)
        await client._handle_frame(dict(first))
        await client._handle_frame(dict(first))
        await pw.push(users=["s3"], event="p", data=2)
        [second] = await take(client, 1)
        assert (second["offset"], second["data"]) == (2, 2)
        assert client.duplicates == 2
        # a new epoch (history reset) is not a duplicate, even at a lower offset
        await client._handle_frame({**first, "epoch": "reset", "offset": 1})
        [again] = await take(client, 1)
        assert again["epoch"] == "reset"
        await nothing_more(client)


async def test_ack_over_ws_moves_the_unread_replay(live: LiveServer) -> None:
    token = live.token("s4")
    acks = live.runtime.connections.acks
    async with live.pusher() as pw:
        a = RealtimeClient(live.http, token)
        async with a:
            for i in range(1, 6):
                await pw.push(users=["s4"], event="p", data=i)
            got = await take(a, 5)
            assert by_channel(got, "user.s4") == [1, 2, 3, 4, 5]
            assert await a.ack("user.s4", 3) is None  # over WebSocket the sender gets no answer
            await eventually(lambda: _equals(acks.get(live.app_id, "s4", "user.s4"), 3))
            b = RealtimeClient(live.http, token)
            async with b:
                unread = await take(b, 2)
                assert by_channel(unread, "user.s4") == [4, 5]
                await nothing_more(b)


async def _equals(value: Any, expected: Any) -> bool:
    return await value == expected


async def test_longpoll_only(live: LiveServer) -> None:
    token = live.token("s5", ["room.*"])
    client = RealtimeClient(live.http, token, transports=("longpoll",), channels=["room.lp"], poll_timeout=5)
    async with client, live.pusher() as pw:
        assert client.transport == "longpoll"
        assert client.welcome is not None and client.welcome["user"] == "s5"
        for i in range(1, 4):
            await pw.push(users=["s5"], event="p", data=i)
            await pw.push(channels=["room.lp"], event="r", data=i)
        got = await take(client, 6)
        assert by_channel(got, "user.s5") == [1, 2, 3]
        assert by_channel(got, "room.lp") == [1, 2, 3]
        # a room added while a poll waits is picked up at once
        sub = await asyncio.wait_for(client.subscribe("room.two"), 3)
        assert sub is not None and sub["channel"] == "room.two" and sub["recovered"] is False
        await pw.push(channels=["room.two"], event="r", data="two")
        [two] = await take(client, 1)
        assert (two["channel"], two["offset"]) == ("room.two", 1)
        assert await client.ack("user.s5", 2) == 2
        assert await live.runtime.connections.acks.get(live.app_id, "s5", "user.s5") == 2
        await nothing_more(client)
    # the next first poll (another device) gets the unread messages after the ack
    other = RealtimeClient(live.http, token, transports=("longpoll",), poll_timeout=5)
    async with other:
        unread = await take(other, 1)
        assert by_channel(unread, "user.s5") == [3]
        await nothing_more(other)


async def test_falls_back_to_longpoll_when_websocket_cannot_open(live: LiveServer) -> None:
    """A proxy in the way answers the upgrade with a plain HTTP error: the client long-polls."""

    async def blocking_proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    proxy = await asyncio.start_server(blocking_proxy, "127.0.0.1", 0)
    port = proxy.sockets[0].getsockname()[1]

    class BehindProxy(RealtimeClient):
        def _ws_url(self, token: str) -> str:
            return f"ws://127.0.0.1:{port}/api/v1/ws?token={token}"

    client = BehindProxy(live.http, live.token("s6"), poll_timeout=5)
    try:
        async with client, live.pusher() as pw:
            assert client.transport == "longpoll"
            await pw.push(users=["s6"], event="p", data=1)
            [m] = await take(client, 1)
            assert m["offset"] == 1
    finally:
        proxy.close()
        await proxy.wait_closed()


async def test_token_is_renewed_after_401(live: LiveServer) -> None:
    tokens = ["not-a-token", live.token("s7")]
    calls = 0

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        return tokens[min(calls - 1, 1)]

    client = RealtimeClient(live.http, fetch, backoff_max=0.5)
    async with client:
        assert client.transport == "ws" and calls == 2


async def test_gap_that_cannot_be_filled_is_reported(live: LiveServer) -> None:
    async with live.pusher() as pw:
        out = await pw.push_batch([{"channels": ["room.t"], "event": "e", "data": i} for i in range(20)])
        epoch = out["results"][0]["deliveries"][0]["epoch"]
        await asyncio.sleep(0.3)
        async with live.runtime.backends.database.session() as s:
            await s.execute(
                sa.delete(Message).where(
                    Message.app_id == live.app_id, Message.channel == "room.t", Message.offset <= 10
                )
            )
            await s.commit()
        await live.runtime.backends.cache.delete(hot_key(live.app_id, "room.t"))
        seen: list[tuple[str, dict[str, Any]]] = []
        client = RealtimeClient(
            live.http, live.token("s8", ["room.*"]), channels=["room.t"], on_gap=lambda c, f: seen.append((c, f))
        )
        client._positions["room.t"] = (epoch, 5)  # as if offsets up to 5 were delivered before
        async with client:
            sub = await client.subscribe("room.t")
            assert sub is not None and (sub["recovered"], sub["offset"]) == (False, 20)
            assert [f["channel"] for f in client.gaps] == ["room.t"] and seen == [("room.t", sub)]
            await pw.push(channels=["room.t"], event="e", data="next")
            [m] = await take(client, 1)
            assert m["offset"] == 21


async def test_heartbeats_keep_a_busy_connection_open(tmp_path: Path) -> None:
    """Heartbeat 1 s, and the server streams without pause (so it never pings): the client's own
    pings keep it from being closed as silent (4003)."""
    url = f"sqlite+aiosqlite:///{tmp_path}/hb.db"
    await asyncio.to_thread(upgrade, url)
    env = {"PUSHWIRE_DATABASE_URL": url, "PUSHWIRE_SECRET_KEY": "test-secret-key-0123456789", "PUSHWIRE_HEARTBEAT": "1"}
    async with live_server(env) as live, live.pusher() as pw:
        client = RealtimeClient(live.http, live.token("hb"))
        async with client:
            assert client.welcome is not None and client.welcome["heartbeat"] == 1
            got = []
            for i in range(1, 21):
                await pw.push(users=["hb"], event="p", data=i)
                got += await take(client, 1)
                await asyncio.sleep(0.2)
            assert by_channel(got, "user.hb") == list(range(1, 21))
            await asyncio.sleep(3)  # and quiet: the server pings, the client answers
            assert client.connects == 1 and client.transport == "ws"


async def test_connection_limit_backs_off_then_connects(live: LiveServer) -> None:
    created = await live.new_app(max_connections_per_user=1)
    token = live.token("s9", created=created)
    first = RealtimeClient(live.http, token)
    second = RealtimeClient(live.http, token, backoff_min=0.1, backoff_max=1.0)
    async with first:
        starting = asyncio.create_task(second.start())
        await asyncio.sleep(0.8)
        assert not starting.done() and second.transport is None  # closed with 4004, waiting
    await asyncio.wait_for(starting, 5)  # the first one left: the second gets in
    assert second.transport == "ws" and second.connects == 1
    await second.close()
