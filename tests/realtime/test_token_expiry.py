"""An open WebSocket ends (4001) once its token has expired, by the verifier's rule (exp + leeway)."""

from __future__ import annotations

import asyncio
import time

import pytest
import websockets

from tests.live import Client, LiveServer

LEEWAY = 1.0


def _wire(live: LiveServer) -> None:
    """What the runtime does: the hub's liveness tick asks the verifier whether a token expired."""
    live.runtime.tokens.leeway = LEEWAY
    live.runtime.hub.expired = live.runtime.tokens.expired


async def test_a_websocket_is_closed_4001_soon_after_its_token_expires(live: LiveServer) -> None:
    _wire(live)
    exp = int(time.time()) + 3  # mint_token: exp = now (whole seconds) + ttl
    short = await Client.connect(live.ws_url(live.token("short", ttl=3)))
    lasting = await Client.connect(live.ws_url(live.token("lasting", ttl=600)))
    await short.recv_until("welcome")
    await lasting.recv_until("welcome")
    with pytest.raises(websockets.ConnectionClosed):
        async with asyncio.timeout(15):
            while True:
                await short.ws.recv()
    closed_at = time.time()
    assert short.ws.close_code == 4001
    assert closed_at >= exp + LEEWAY - 0.5  # not before exp + leeway ...
    assert closed_at - (exp + LEEWAY) < 4  # ... and within a few seconds of it
    print(f"closed {closed_at - exp:.2f} s after exp ({closed_at - exp - LEEWAY:.2f} s after exp + leeway)")
    # the other connection is untouched
    await lasting.send({"type": "ping"})
    assert (await lasting.recv_until("pong"))["type"] == "pong"
    await lasting.close()
