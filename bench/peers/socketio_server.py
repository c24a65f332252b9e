"""The peer: python-socketio (ASGI) under uvicorn, one worker, broadcasting with `sio.emit`.

    python -m bench.peers.socketio_server --port 9003 [--deflate]

Clients speak Engine.IO v4 over WebSocket (`/socket.io/?EIO=4&transport=websocket`); the event
`pub` with `"<n>|<payload JSON>"` makes the server emit event `m` with the decoded payload to
every other client n times.
"""

from __future__ import annotations

import argparse
import json

import socketio
import uvicorn

sio = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*", transports=["websocket"])
app = socketio.ASGIApp(sio)


@sio.on("pub")
async def pub(sid: str, text: str) -> None:
    n, _, payload = text.partition("|")
    data = json.loads(payload)
    for _ in range(int(n)):
        await sio.emit("m", data, skip_sid=sid)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--deflate", action="store_true")
    a = p.parse_args()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=a.port,
        log_level="warning",
        ws="websockets-sansio",
        ws_per_message_deflate=a.deflate,
        backlog=4096,
    )
