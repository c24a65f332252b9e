"""Replays cannot be used to make the server hold memory: paged, paced by the socket, capped per
connection; subscriptions capped and rate-limited. The recovery guarantees still hold."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
import websockets

from pushwire.messaging.hot_history import hot_key
from pushwire.messaging.publish import PublishRequest
from pushwire.realtime import protocol
from pushwire.realtime import recovery as recovery_mod
from pushwire.realtime import session as session_mod
from pushwire.realtime.session import Session
from pushwire.storage.models import Message
from tests.live import Client, LiveServer

SMALL = msgspec.Raw(b'"' + b"x" * 180 + b'"')  # ~300-byte message frames


async def _fill(live: LiveServer, channel: str, n: int, data: msgspec.Raw = SMALL) -> str:
    for start in range(0, n, 500):
        reqs = [PublishRequest(channels=(channel,), event="e", data=data) for _ in range(min(500, n - start))]
        await live.runtime.publisher.publish_many(live.tenant_id, live.app_id, reqs)
    live.runtime.notify_published()
    return (await live.runtime.history.states(live.app_id, [channel]))[channel].epoch


async def _session_of(live: LiveServer, user: str) -> Session:
    async with asyncio.timeout(5):
        while True:
            for s in live.runtime.hub.sessions.values():
                if s.user_id == user and s.transport.kind == "ws":
                    return s
            await asyncio.sleep(0.02)


async def _keep_talking(ws: websockets.ClientConnection) -> None:
    """A client that sends (so it is not silent) but never reads."""
    while True:
        await ws.send(json.dumps({"type": "ping"}))
        await asyncio.sleep(0.5)


async def test_a_subscribe_flood_on_a_socket_that_does_not_read_stays_bounded(live: LiveServer) -> None:
    epoch = await _fill(live, "room.flood", 2_000)
    recovery = live.runtime.connections.recovery
    ws = await websockets.connect(
        live.ws_url(live.token("flooder", ["room.*"])), max_queue=1, max_size=None, compression=None
    )
    talk = asyncio.create_task(_keep_talking(ws))
    try:
        await ws.recv()  # the welcome; nothing more is read
        session = await _session_of(live, "flooder")
        pages_before = recovery.pages
        frame = {"type": "subscribe", "channel": "room.flood", "since": {"epoch": epoch, "offset": 0}}
        for _ in range(60):
            await ws.send(json.dumps(frame))
        await asyncio.sleep(2)
        # Pages are read only as the socket takes them: once it stops, reading stops.
        stalled = recovery.pages
        assert stalled > pages_before
        await asyncio.sleep(1.5)
        assert recovery.pages == stalled
        assert session.closing is None and session.held <= session_mod.MAX_HELD_BYTES
        # Live traffic on the replayed channel for a client that reads nothing: closed 4008,
        # never holding more than the per-connection cap on the way.
        big = msgspec.Raw(b'"' + b"y" * 10_000 + b'"')
        for _ in range(10):
            reqs = [PublishRequest(channels=("room.flood",), event="e", data=big) for _ in range(100)]
            await live.runtime.publisher.publish_many(live.tenant_id, live.app_id, reqs)
            live.runtime.notify_published()
        async with asyncio.timeout(30):
            while session.closing is None:
                await asyncio.sleep(0.05)
        assert session.closing[0] == protocol.Close.SLOW_CONSUMER
        assert 0 < session.peak_held <= session_mod.MAX_HELD_BYTES
        assert recovery.largest_page <= recovery_mod.REPLAY_PAGE_MAX
    finally:
        talk.cancel()
        await asyncio.gather(talk, return_exceptions=True)
        await ws.close()


async def test_a_paged_replay_merges_live_messages_in_order(live: LiveServer) -> None:
    epoch = await _fill(live, "room.paged", 3_000)
    pages_before = live.runtime.connections.recovery.pages
    async with await Client.connect(live.ws_url(live.token("reader", ["room.*"]))) as c, live.pusher() as pw:
        await c.recv_until("welcome")
        await c.send({"type": "subscribe", "channel": "room.paged", "since": {"epoch": epoch, "offset": 0}})
        head = await c.recv_until("subscribed")
        assert (head["recovered"], head["replayed"], head["offset"]) == (True, 3_000, 3_000)
        for i in range(20):  # live messages published while the replay is being read
            await pw.push(channels=["room.paged"], event="live", data=i)
        got = await c.messages(3_020, timeout=60)
        assert [m["offset"] for m in got] == list(range(1, 3_021))
        assert [m["data"] for m in got[3_000:]] == list(range(20))
    assert live.runtime.connections.recovery.pages - pages_before >= 3_000 // recovery_mod.REPLAY_PAGE_MAX


async def test_a_replay_that_breaks_midway_closes_4500_not_silently(live: LiveServer) -> None:
    """A replay announced as recovered whose later page turns out missing (deleted while it ran)
    must not go on past the hole: the connection closes 4500 and the client resumes with since."""
    epoch = await _fill(live, "room.cut", 3_000)
    async with asyncio.timeout(10):  # the relay is done with the hot history before it is dropped
        while await live.runtime.backends.cache.list_length(hot_key(live.app_id, "room.cut")) < 1_000:
            await asyncio.sleep(0.05)
    async with live.runtime.backends.database.session() as s:
        await s.execute(
            sa.delete(Message).where(
                Message.app_id == live.app_id, Message.channel == "room.cut", Message.offset.between(2_000, 2_100)
            )
        )
        await s.commit()
    await live.runtime.backends.cache.delete(hot_key(live.app_id, "room.cut"))
    ws = await websockets.connect(live.ws_url(live.token("cut", ["room.*"])), max_size=None)
    try:
        await ws.recv()
        await ws.send(json.dumps({"type": "subscribe", "channel": "room.cut", "since": {"epoch": epoch, "offset": 0}}))
        frames: list[dict[str, Any]] = []
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(30):
                while True:
                    frames.append(json.loads(await ws.recv()))
        assert ws.close_code == protocol.Close.RECONNECT
        [head] = [f for f in frames if f["type"] == "subscribed"]
        assert (head["recovered"], head["replayed"]) == (True, 3_000)
        offsets = [f["offset"] for f in frames if f["type"] == "message"]
        assert offsets == list(range(1, len(offsets) + 1)) and len(offsets) < 2_000
    finally:
        await ws.close()


async def test_subscriptions_per_connection_are_capped(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "SUBSCRIBE_RATE", 1000.0)  # this test is about the cap, not the rate
    async with await Client.connect(live.ws_url(live.token("many", ["room.*"]))) as c:
        await c.recv_until("welcome")
        for i in range(protocol.MAX_SUBSCRIPTIONS):
            await c.send({"type": "subscribe", "channel": f"room.r{i}"})
        for _ in range(protocol.MAX_SUBSCRIPTIONS):
            await c.recv_until("subscribed")
        await c.send({"type": "subscribe", "channel": "room.one-too-many"})
        err = await c.recv_until("error")
        assert (err["code"], err["channel"]) == ("too_many_subscriptions", "room.one-too-many")
        await c.send({"type": "subscribe", "channel": "room.r0"})  # subscribing again replaces: allowed
        assert (await c.recv_until("subscribed"))["channel"] == "room.r0"
        await c.send({"type": "unsubscribe", "channel": "room.r1"})
        await c.recv_until("unsubscribed")
        await c.send({"type": "subscribe", "channel": "room.one-too-many"})
        assert (await c.recv_until("subscribed"))["channel"] == "room.one-too-many"


async def test_subscribe_frames_are_rate_limited(live: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "SUBSCRIBE_RATE", 0.5)  # a slow refill: the test does not race it
    ws = await websockets.connect(live.ws_url(live.token("spam", ["room.*"])), max_size=None)
    await ws.recv()
    frame = json.dumps({"type": "subscribe", "channel": "room.spam"})
    for _ in range(protocol.SUBSCRIBE_BURST + 5):
        await ws.send(frame)
    kinds: list[str] = []
    async with asyncio.timeout(15):
        while kinds.count("rate_limited") < 4:
            f = json.loads(await ws.recv())
            kinds.append(f["type"] if f["type"] != "error" else f["code"])
            if f["type"] == "error":
                assert f["channel"] == "room.spam" and f["message"]
    # The burst is answered; past it, each frame is refused with an error ...
    assert kinds.count("subscribed") >= protocol.SUBSCRIBE_BURST
    # ... and a client that keeps going is closed like one sending malformed frames.
    for _ in range(20):
        try:
            await ws.send(frame)
        except websockets.ConnectionClosed:
            break
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(15):
            while True:
                await ws.recv()
    assert ws.close_code == protocol.Close.BAD_FRAMES
