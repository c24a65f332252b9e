"""Detached connections under real uvicorn (transports/direct.py, realtime/inbox.py): the handler
returns, the connection stays open with no task of its own, frames are handled in order, and the
session ends once whichever side closes."""

from __future__ import annotations

import asyncio
import json

import websockets
from websockets.protocol import Protocol as FrameParser

from tests.live import Client, LiveServer


def _connection_tasks() -> list[str]:
    """Tasks of the server's per-connection kind still alive (ASGI handlers, writers, readers)."""
    names = ("run_asgi", "_write_loop", "_read_until_closed", "_read")
    return [
        t.get_coro().__qualname__  # type: ignore[union-attr]
        for t in asyncio.all_tasks()
        if not t.done() and getattr(t.get_coro(), "__qualname__", "").rsplit(".", 1)[-1] in names
    ]


async def _until(check: object, timeout: float = 5) -> None:
    async with asyncio.timeout(timeout):
        while not check():  # type: ignore[operator]
            await asyncio.sleep(0.02)


async def _gone(live: LiveServer, app_id: str, timeout: float = 5) -> None:
    """No session left in the hub, no route left in the database (deletes are batched)."""
    async with asyncio.timeout(timeout):
        while live.runtime.hub.sessions or await live.runtime.presence.count(app_id):
            await asyncio.sleep(0.05)


async def test_idle_connections_hold_no_task(live: LiveServer) -> None:
    app = await live.new_app()
    clients = [await Client.connect(live.ws_url(live.token(f"idle{i}", created=app))) for i in range(20)]
    try:
        for c in clients:
            await c.recv_until("welcome")
        await _until(lambda: len(live.runtime.hub.sessions) >= 20)
        await asyncio.sleep(0.1)
        assert _connection_tasks() == []
        # The handshake request is released: websockets' parser runs frames only.
        parsers = [s.transport._direct._protocol.conn.parser for s in live.runtime.hub.sessions.values()]  # type: ignore[attr-defined]
        assert parsers and all(g.gi_code is FrameParser.parse.__code__ for g in parsers)
        # ... and they still work both ways.
        await clients[0].send({"type": "ping"})
        assert (await clients[0].recv_until("pong"))["type"] == "pong"
        async with live.pusher(app) as pw:
            await pw.push(broadcast=True, event="e", data=1)
        for c in clients:
            assert (await c.messages(1))[0]["data"] == 1
    finally:
        for c in clients:
            await c.close()
    await _gone(live, app.app_id)


async def test_frames_are_handled_in_arrival_order(live: LiveServer) -> None:
    app = await live.new_app()
    async with await Client.connect(live.ws_url(live.token("order", ["room.*"], created=app))) as c:
        await c.recv_until("welcome")
        # Sent back to back: the pings wait behind the subscribes (which read positions).
        for i in range(5):
            await c.ws.send(json.dumps({"type": "subscribe", "channel": f"room.{i}"}))
            await c.ws.send(json.dumps({"type": "ping"}))
        kinds = []
        async with asyncio.timeout(10):
            while len(kinds) < 10:
                frame = json.loads(await c.ws.recv())
                kinds.append(frame["type"] + (f":{frame['channel']}" if "channel" in frame else ""))
        assert kinds == [k for i in range(5) for k in (f"subscribed:room.{i}", "pong")]


async def test_a_close_from_either_side_ends_the_session_once(live: LiveServer) -> None:
    app = await live.new_app()
    # Ours: more than 10 malformed frames a minute close it with 4002.
    ws = await websockets.connect(live.ws_url(live.token("bad", created=app)))
    json.loads(await ws.recv())  # welcome
    for _ in range(12):
        await ws.send("not json")
    async with asyncio.timeout(10):
        while True:
            try:
                await ws.recv()
            except websockets.ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 4002
                break
    # Theirs: the client goes away.
    c = await Client.connect(live.ws_url(live.token("leaves", created=app)))
    await c.recv_until("welcome")
    await c.close()
    await _gone(live, app.app_id)
    assert _connection_tasks() == []
