"""GET /api/v1/ws: the WebSocket transport.

Token and Origin are checked before the upgrade (401/403 as plain HTTP, through the ASGI
denial-response extension). After that the reader loop feeds frames to Connections and the
session's writer task owns all sends: written straight to the socket when the server offers the
`pushwire.direct` extension (direct.py), else as ASGI messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import msgspec
from litestar import WebSocket, websocket
from litestar.types.asgi_types import WebSocketResponseStartEvent

from pushwire.errors import ApiError
from pushwire.realtime.connections import Connections, LimitReached
from pushwire.realtime.inbox import SessionInbox
from pushwire.realtime.protocol import Close
from pushwire.realtime.session import Session
from pushwire.realtime.transports.auth import identify, origin_allowed
from pushwire.realtime.transports.direct import EXTENSION, DirectWriter
from pushwire.runtime import Runtime


class WebSocketTransport:
    __slots__ = ("_direct", "_send")
    kind = "ws"

    def __init__(self, socket: WebSocket[Any, Any, Any]) -> None:
        # Frames go straight to the socket where the server offers it (`pushwire run`: direct.py).
        writer = (socket.scope.get("extensions") or {}).get(EXTENSION)
        self._direct: DirectWriter | None = writer if isinstance(writer, DirectWriter) and writer.usable else None
        # Direct: nothing of Litestar's is kept, so it can all go when the handler returns.
        self._send = None if self._direct is not None else socket.send

    @property
    def direct(self) -> bool:
        """True when frames are written straight to the socket."""
        return self._direct is not None

    def try_send(self, frame: str) -> bool:
        """Write `frame` now if the socket takes it without waiting (the session's fast path)."""
        return self._direct is not None and self._direct.try_write(frame)

    async def send_frames(self, frames: list[str]) -> None:
        if self._direct is not None:
            await self._direct.send_text(frames)
            return
        assert self._send is not None
        for frame in frames:
            await self._send({"type": "websocket.send", "text": frame, "bytes": None})

    async def close(self, code: int, reason: str) -> None:
        if self._direct is not None:
            await self._direct.close(int(code), reason[:120])
            return
        assert self._send is not None
        await self._send({"type": "websocket.close", "code": int(code), "reason": reason[:120]})

    def detach(self, connections: Connections, session: Session) -> None:
        """Direct only: the connection outlives the handler; its frames go to the session's inbox."""
        assert self._direct is not None
        self._direct.detach(SessionInbox(connections, session, self._direct))

    def end_reading(self) -> None:
        """The session closed: the handler's pending receive returns a disconnect (direct only)."""
        if self._direct is not None:
            self._direct.end_reading()


async def _deny(socket: WebSocket[Any, Any, Any], status: int, code: str, message: str) -> None:
    if "websocket.http.response" in (socket.scope.get("extensions") or {}):
        body = msgspec.json.encode({"error": code, "message": message})
        start: WebSocketResponseStartEvent = {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
        await socket.send(start)
        await socket.send({"type": "websocket.http.response.body", "body": body, "more_body": False})
    else:  # servers without the extension: the spec allows closing with 4001 instead
        await socket.accept()
        await socket.close(code=Close.UNAUTHORIZED if status == 401 else Close.FORBIDDEN, reason=message[:120])


@websocket("/api/v1/ws")
async def websocket_endpoint(socket: WebSocket[Any, Any, Any], runtime: Runtime) -> None:
    try:
        identity = await identify(runtime.tokens, socket.query_params, socket.headers)
    except ApiError as exc:
        await _deny(socket, exc.status, exc.code, exc.message)
        return
    if not origin_allowed(identity, socket.headers.get("origin")):
        await _deny(socket, 403, "origin_not_allowed", "this Origin is not allowed for the app")
        return
    if runtime.draining:
        await _deny(socket, 503, "unavailable", "this instance is shutting down; reconnect")
        return
    connections = runtime.connections
    try:
        session_id = await connections.admit(identity, WebSocketTransport.kind)
    except LimitReached as exc:
        await socket.accept()
        await socket.close(code=Close.LIMIT, reason=str(exc))
        return
    try:
        await socket.accept()
        transport = WebSocketTransport(socket)  # after accept: the direct writer needs the handshake done
        session = await connections.open(identity, transport, session_id)
    except BaseException:
        await connections.release(session_id, identity.app_id, identity.user_id)
        raise
    if transport.direct:
        # The handler returns; the connection stays open with no task of its own. The inbox ends
        # the session on the disconnect, whichever side closes.
        session.on_closed = transport.end_reading
        transport.detach(connections, session)
        if session.has_closed:  # closed before the inbox was there
            transport.end_reading()
        return
    try:
        await _read_until_closed(socket, session, runtime)
    finally:
        await connections.close(session)


async def _read_until_closed(socket: WebSocket[Any, Any, Any], session: Session, runtime: Runtime) -> None:
    """Servers without the direct extension: a reader task, ended when the session closes."""
    reader = asyncio.create_task(_read(socket, session, runtime))
    closed = asyncio.create_task(session.closed.wait())
    try:
        await asyncio.wait({reader, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, closed):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(reader, closed, return_exceptions=True)


async def _read(socket: WebSocket[Any, Any, Any], session: Session, runtime: Runtime) -> None:
    receive, connections = socket.receive, runtime.connections
    while session.closing is None:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        work = connections.receive(
            session, cast(str | None, message.get("text")), cast(bytes | None, message.get("bytes"))
        )
        if work is not None:
            await work
