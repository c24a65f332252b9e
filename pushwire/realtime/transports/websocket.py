"""GET /api/v1/ws: the WebSocket transport.

A raw ASGI route of the Litestar app: a connect reads two headers and one query parameter from
the scope, so Litestar's WebSocket, Headers and query objects (and dependency injection) are not
built for it (~10 % of a connect's CPU). Token and Origin are checked before the upgrade (401/403
as plain HTTP, through the ASGI denial-response extension). After that frames go to Connections
and the session owns all sends: written straight to the socket when the server offers the
`pushwire.direct` extension (direct.py), else as ASGI messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast
from urllib.parse import unquote_plus

import msgspec
from litestar import asgi
from litestar.enums import ScopeType
from litestar.types import Receive, Scope, Send

from pushwire.errors import ApiError
from pushwire.realtime.connections import LimitReached
from pushwire.realtime.inbox import FrameHandler, SessionInbox
from pushwire.realtime.protocol import Close
from pushwire.realtime.session import Session
from pushwire.realtime.transports.auth import identify, origin_allowed
from pushwire.realtime.transports.direct import EXTENSION, DirectWriter
from pushwire.runtime import Runtime

PATH = "/api/v1/ws"


class WebSocketTransport:
    __slots__ = ("_direct", "_send")
    kind = "ws"

    def __init__(self, scope: Scope, send: Send) -> None:
        # Frames go straight to the socket where the server offers it (`pushwire run`: direct.py).
        writer = (scope.get("extensions") or {}).get(EXTENSION)
        self._direct: DirectWriter | None = writer if isinstance(writer, DirectWriter) and writer.usable else None
        # Direct: the ASGI send is not kept, so the handshake's objects go when the handler returns.
        self._send = None if self._direct is not None else send

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

    def detach(self, handler: FrameHandler, session: Session) -> None:
        """Direct only: the connection outlives the handler; its frames go to the session's inbox."""
        assert self._direct is not None
        self._direct.detach(SessionInbox(handler, session, self._direct))

    def end_reading(self) -> None:
        """The session closed: the handler's pending receive returns a disconnect (direct only)."""
        if self._direct is not None:
            self._direct.end_reading()


def query_param(query: bytes, name: bytes) -> str:
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == name:
            return unquote_plus(value.decode("latin-1"))
    return ""


def request_headers(scope: Scope, names: tuple[bytes, ...]) -> dict[str, str]:
    """The few request headers a connect reads (ASGI lower-cases names; the first of each wins)."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in names:
            found.setdefault(name.decode(), value.decode("latin-1"))
    return found


async def _deny(scope: Scope, send: Send, status: int, code: str, message: str) -> None:
    if "websocket.http.response" in (scope.get("extensions") or {}):
        body = msgspec.json.encode({"error": code, "message": message})
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
    else:  # servers without the extension: the spec allows closing with 4001 instead
        await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
        await _close(send, Close.UNAUTHORIZED if status == 401 else Close.FORBIDDEN, message)


async def _close(send: Send, code: int, reason: str) -> None:
    await send({"type": "websocket.close", "code": int(code), "reason": reason[:120]})


async def not_websocket(send: Send) -> None:
    """A plain HTTP request to the WebSocket path: 426, with the spec's error body."""
    body = msgspec.json.encode({"error": "upgrade_required", "message": "this endpoint speaks WebSocket"})
    await send(
        {
            "type": "http.response.start",
            "status": 426,
            "headers": [(b"content-type", b"application/json"), (b"upgrade", b"websocket")],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


@asgi(PATH, is_mount=False, copy_scope=False)
async def websocket_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != ScopeType.WEBSOCKET:
        await not_websocket(send)
        return
    runtime = cast(Runtime, scope["litestar_app"].state.runtime)
    if (await receive())["type"] != "websocket.connect":  # the ASGI opening message
        return
    headers = request_headers(scope, (b"authorization", b"origin"))
    try:
        identity = await identify(runtime.tokens, {"token": query_param(scope["query_string"], b"token")}, headers)
    except ApiError as exc:
        await _deny(scope, send, exc.status, exc.code, exc.message)
        return
    if not origin_allowed(identity, headers.get("origin")):
        await _deny(scope, send, 403, "origin_not_allowed", "this Origin is not allowed for the app")
        return
    if runtime.draining:
        await _deny(scope, send, 503, "unavailable", "this instance is shutting down; reconnect")
        return
    connections = runtime.connections
    try:
        session_id = await connections.admit(identity, WebSocketTransport.kind)
    except LimitReached as exc:
        await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
        await _close(send, Close.LIMIT, str(exc))
        return
    try:
        await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
        transport = WebSocketTransport(scope, send)  # after accept: the direct writer needs the handshake done
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
        await read_until_closed(receive, session, connections)
    finally:
        await connections.close(session)


async def read_until_closed(receive: Receive, session: Session, handler: FrameHandler) -> None:
    """Servers without the direct extension: a reader task, ended when the session closes."""
    reader = asyncio.create_task(_read(receive, session, handler))
    closed = asyncio.create_task(session.closed.wait())
    try:
        await asyncio.wait({reader, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, closed):
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(reader, closed, return_exceptions=True)


async def _read(receive: Receive, session: Session, handler: FrameHandler) -> None:
    while session.closing is None:
        message = cast(dict[str, Any], await receive())
        if message["type"] == "websocket.disconnect":
            return
        work = handler.receive(session, message.get("text"), message.get("bytes"))
        if work is not None:
            await work
