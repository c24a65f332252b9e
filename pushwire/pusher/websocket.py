"""`/app/{key}`: the Pusher Channels WebSocket endpoint (protocol 7, and 6 as Pysher speaks it).

Every refusal is sent as Pusher's clients understand it: the socket is accepted, then a
`pusher:error` frame and a close with the same code (pusher-js decides from the close code,
Pysher from the frame). After `connection_established` the connection is the platform's:
written straight to the socket and detached (realtime/transports/direct.py), its frames handled
by PusherSockets through the same inbox as native frames.
"""

from __future__ import annotations

from typing import Any, cast

import msgspec
from litestar import Response, WebSocket, get, websocket
from litestar.types import Receive, Scope, Send

from pushwire.pusher import frames as f
from pushwire.pusher.sockets import PusherSockets, identity_of, socket_id
from pushwire.realtime.connections import LimitReached
from pushwire.realtime.transports.auth import origin_allowed
from pushwire.realtime.transports.websocket import (
    WebSocketTransport,
    query_param,
    read_until_closed,
    request_headers,
)
from pushwire.runtime import Runtime

PROTOCOLS = range(4, 8)


class PusherTransport(WebSocketTransport):
    """The platform's WebSocket transport; a close is preceded by its `pusher:error` (Pysher acts on that only)."""

    __slots__ = ()
    kind = "pusher"

    async def close(self, code: int, reason: str) -> None:
        if code >= 4000:
            try:
                await self.send_frames([f.error(code, reason)])
            except (OSError, RuntimeError, ConnectionError):
                pass
        await super().close(code, reason)


async def _refuse(send: Send, code: int, message: str) -> None:
    await send({"type": "websocket.send", "text": f.error(code, message), "bytes": None})
    await send({"type": "websocket.close", "code": code, "reason": message[:120]})


# A WebSocket route handler, not a raw ASGI one as /api/v1/ws: Litestar's ASGI routes with a path
# parameter fail plain HTTP requests (500) instead of reaching the handler; a plain request gets
# 426 from `pusher_http` instead. Litestar's WebSocket object costs a little per connect only.
@websocket("/app/{key:str}", name="pusher-websocket")
async def pusher_endpoint(socket: WebSocket[Any, Any, Any], key: str) -> None:
    try:
        await _serve(socket.scope, socket.receive, socket.send, key)
    finally:
        # Litestar's wrappers of receive and send close over the WebSocket object (a cycle that
        # holds the scope, hence the connection's protocol): cut, so a closed connection is
        # freed at once, not by a full GC collection.
        socket.receive, socket.send = _no_receive, _no_send


async def _no_receive() -> Any:
    return {"type": "websocket.disconnect", "code": 1006}


async def _no_send(message: Any) -> None:
    raise ConnectionError("the handler has returned")


@get("/app/{key:str}", name="pusher-websocket-http", include_in_schema=False)
async def pusher_http(key: str) -> Response[bytes]:
    body = msgspec.json.encode(
        {"error": "upgrade_required", "message": "this endpoint speaks WebSocket (Pusher protocol)"}
    )
    return Response(body, status_code=426, media_type="application/json", headers={"upgrade": "websocket"})


async def _serve(scope: Scope, receive: Receive, send: Send, key: str) -> None:
    runtime = cast(Runtime, scope["litestar_app"].state.runtime)
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
    protocol = query_param(scope["query_string"], b"protocol")
    if not protocol:
        await _refuse(send, f.Code.NO_PROTOCOL, "no protocol version given (?protocol=7)")
        return
    if not protocol.isdigit() or int(protocol) not in PROTOCOLS:
        await _refuse(send, f.Code.UNSUPPORTED_PROTOCOL, f"unsupported protocol version {protocol[:10]}")
        return
    entry = await runtime.auth.key_entry(key) if key.startswith("sk_") and len(key) <= 40 and "/" not in key else None
    if entry is None:
        await _refuse(send, f.Code.UNKNOWN_KEY, f"App key {key[:40]} does not exist")
        return
    if not entry.app.enabled or entry.tenant_disabled:
        await _refuse(send, f.Code.APP_DISABLED, "this app is disabled")
        return
    socket = socket_id()
    identity = identity_of(entry, socket)
    if not origin_allowed(identity, request_headers(scope, (b"origin",)).get("origin")):
        await _refuse(send, f.Code.UNAUTHORIZED, "this Origin is not allowed for the app")
        return
    if runtime.draining:
        await _refuse(send, f.Code.RECONNECT, "this instance is shutting down; reconnect")
        return
    connections = runtime.connections
    sockets: PusherSockets = runtime.pusher.sockets
    try:
        await connections.admit(identity, PusherTransport.kind, socket)
    except LimitReached as exc:
        await _refuse(send, f.Code.OVER_QUOTA, str(exc))
        return
    try:
        transport = PusherTransport(scope, send)
        session = sockets.open(entry, int(protocol), transport, socket)
    except BaseException:
        await connections.release(socket, identity.app_id, identity.user_id, seen=False)
        raise
    if transport.direct:
        session.on_closed = transport.end_reading
        transport.detach(sockets, session)
        if session.has_closed:
            transport.end_reading()
        return
    try:
        await read_until_closed(receive, session, sockets)
    finally:
        await sockets.close(session)
