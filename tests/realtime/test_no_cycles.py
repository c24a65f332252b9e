"""A closed connection is freed by reference counting, not left in cycles for a full GC collection
(which a long-running instance would see as memory that sways by megabytes: issue 15)."""

from __future__ import annotations

import asyncio
import gc
import json

import websockets

from pushwire.pusher.session import PusherSession
from pushwire.realtime import inbox
from pushwire.realtime.inbox import SessionInbox
from pushwire.realtime.session import Session
from pushwire.realtime.transports.direct import DirectWebSocketProtocol
from pushwire.web.http_protocol import HttpProtocol
from tests.live import LiveServer

SERVER_TYPES = (Session, PusherSession, SessionInbox, DirectWebSocketProtocol, HttpProtocol)


async def test_closed_connections_leave_no_reference_cycles(live: LiveServer) -> None:
    gc.collect()
    gc.disable()
    try:
        native = [await websockets.connect(live.ws_url(live.token(f"cyc{i}"))) for i in range(5)]
        key = live.created.server_key.key_id
        pusher = [await websockets.connect(f"ws://127.0.0.1:{live.port}/app/{key}?protocol=7") for _ in range(3)]
        for ws in native:
            assert json.loads(await ws.recv())["type"] == "welcome"
        for ws in pusher:
            assert json.loads(await ws.recv())["event"] == "pusher:connection_established"
            await ws.send(json.dumps({"event": "pusher:subscribe", "data": {"channel": "room.cyc"}}))
            await ws.recv()
        async with live.pusher() as api:
            await api.push(broadcast=True, event="e", data=1)
            await api.push(channels=["room.cyc"], event="e", data=2)
        for ws in [*native, *pusher]:
            await asyncio.wait_for(ws.recv(), 10)
            await ws.close()
        async with asyncio.timeout(10):
            while live.runtime.hub.sessions or inbox._closing:  # the inboxes' close tasks finish
                await asyncio.sleep(0.05)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = sorted({type(o).__name__ for o in gc.garbage if isinstance(o, SERVER_TYPES)})
        assert not left, f"closed connections left in reference cycles: {left}"
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
