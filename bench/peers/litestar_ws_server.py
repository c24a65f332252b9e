"""The floor of a connect on Pushwire's stack: a bare Litestar WebSocket route on uvicorn.

    python -m bench.peers.litestar_ws_server --port P

Same uvicorn options as `pushwire run` (pushwire/cli/server.py: uvloop, httptools, the
websockets-sansio protocol with the direct-write extension, compression off, no access log,
the same garbage-collector tuning):
the route accepts, sends one welcome text frame and waits for the client to leave. No token,
no limits, no presence, no positions: what is left of a Pushwire connect is the stack's own cost.
"""

from __future__ import annotations

import argparse
from typing import Any

from litestar import Litestar, WebSocket, websocket

WELCOME = '{"type":"welcome"}'


@websocket("/{path:path}")
async def ws(socket: WebSocket[Any, Any, Any], path: str) -> None:
    await socket.accept()
    await socket.send_text(WELCOME)
    while (await socket.receive())["type"] != "websocket.disconnect":
        pass


def main() -> None:
    import uvicorn

    from pushwire.cli.server import tune_gc
    from pushwire.realtime.transports.direct import DirectWebSocketProtocol
    from pushwire.web.http_protocol import HttpProtocol

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    app = Litestar([ws])
    tune_gc()  # as `pushwire run` does
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=a.port,
        log_level="warning",
        access_log=False,
        ws=DirectWebSocketProtocol,
        http=HttpProtocol,  # addresses without a socket object per connection (web/http_protocol.py)
        ws_per_message_deflate=False,
        ws_max_size=64 * 1024,
        # No per-connection ping timer: the hub's one tick pings quiet clients (realtime/hub.py).
        ws_ping_interval=None,
        lifespan="off",
    )


if __name__ == "__main__":
    main()
