"""Frames written straight to the socket, past the per-message ASGI send.

Through ASGI every delivery to every connection goes through Litestar's send wrapper and
uvicorn's websockets-sansio protocol, which builds and serialises a `Frame` object per message
per connection. Here a server frame (unmasked, no extension: per-message deflate stays off) is
built with two byte operations and written to the connection's transport in one call per
batch; uvloop then sends what a tick wrote to a socket in one syscall.

`DirectWebSocketProtocol` is uvicorn's websockets-sansio protocol plus one ASGI scope extension,
`pushwire.direct`, through which the app reaches the connection's `DirectWriter` after its own
checks (token, Origin, limits) and `accept`. Everything else — the handshake, incoming frames,
ping/pong, the close handshake — stays uvicorn's and the websockets library's. It uses uvicorn
internals (`transport`, `writable`, `close_sent`, `disconnected`): pyproject pins uvicorn's minor
version, and the live tests run on it. Where the extension is absent (the test client, another
server) the transport falls back to ASGI sends.

Detached connections: once the app has its session, `DirectWriter.detach(inbox)` lets the ASGI
handler return while the connection stays open. uvicorn's receive queue is replaced by a relay
that hands every message it would have queued (frames, disconnects) to the inbox, and the
handshake's request, response and Litestar's objects are released: an idle connection then holds
no task, no coroutine frames and no queue (realtime/inbox.py handles its frames).
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, cast

from uvicorn.protocols.utils import ClientDisconnected, is_ssl
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import Protocol as FrameParser
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

from pushwire.web.http_protocol import addresses

EXTENSION = "pushwire.direct"


class _Last:
    """The last frame built: a delivery hands the same string to every subscriber, so the frame
    is built once per message (per instance), not once per connection."""

    text: str | None = None
    frame = b""


def text_frame(text: str) -> bytes:
    """A final, unmasked text frame (RFC 6455 §5.2) carrying `text`."""
    if text is _Last.text:
        return _Last.frame
    frame = _build(text)
    _Last.text, _Last.frame = text, frame
    return frame


def _build(text: str) -> bytes:
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65_536:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload


class Inbox(Protocol):
    """Where a detached connection's incoming messages go."""

    def message(self, text: str | None, data: bytes | None) -> None: ...

    def disconnected(self, code: int) -> None: ...


class _Relay:
    """Stands in for uvicorn's receive queue after `detach`: what uvicorn would queue, the inbox gets."""

    __slots__ = ("inbox",)

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    def put_nowait(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.receive":
            self.inbox.message(message.get("text"), message.get("bytes"))
        elif kind == "websocket.disconnect":
            self.inbox.disconnected(int(message.get("code") or 1005))

    def empty(self) -> bool:
        return True


class DirectWriter:
    """Writes whole frames to one accepted connection's transport, in order."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: DirectWebSocketProtocol) -> None:
        self._protocol = protocol

    @property
    def usable(self) -> bool:
        """True once the handshake is done and as long as no close frame went out."""
        p = self._protocol
        return p.handshake_complete and not p.close_sent and not p.disconnected and p.initial_response is None

    def try_write(self, frame: str) -> bool:
        """Write `frame` now unless the transport has paused writing or the connection closes."""
        p = self._protocol
        if not p.writable.is_set() or p.close_sent or p.disconnected:
            return False
        p.transport.write(text_frame(frame))
        return True

    def detach(self, inbox: Inbox) -> None:
        """From now on `inbox` gets the connection's messages and the ASGI handler may return."""
        p = self._protocol
        pending, p.queue = p.queue, _Relay(inbox)  # type: ignore[assignment]
        p.detached = True
        # The handshake is over: what only it needed is released (the scope keeps what logs use).
        p.request = p.response = None  # type: ignore[assignment]
        p.scope = {k: p.scope[k] for k in ("type", "client", "server", "path")}  # type: ignore[assignment]
        release_request(p.conn)
        while not pending.empty():  # frames (or a disconnect) that came in before
            p.queue.put_nowait(pending.get_nowait())
        self.resume_reading()

    def pause_reading(self) -> None:
        """The inbox is behind: stop reading the socket (the peer's sends back up in TCP)."""
        p = self._protocol
        if not p.read_paused and not p.disconnected:
            p.read_paused = True
            p.transport.pause_reading()

    def resume_reading(self) -> None:
        p = self._protocol
        if p.read_paused and not p.disconnected:
            p.read_paused = False
            p.transport.resume_reading()

    async def close(self, code: int, reason: str) -> None:
        """The closing handshake through uvicorn's own send (Litestar's objects may be gone)."""
        await self._protocol.send({"type": "websocket.close", "code": code, "reason": reason})

    def end_reading(self) -> None:
        """Wake the app's pending receive with a disconnect: the session closed from our side
        (the close frame went out, or the peer never read it)."""
        self._protocol.queue.put_nowait({"type": "websocket.disconnect", "code": 1006})

    async def send_text(self, frames: list[str]) -> None:
        """Write `frames`; waits only while the transport has paused writing (the peer does not
        read), as uvicorn's own send does, so a slow reader backs up into its session's queue."""
        p = self._protocol
        if not p.writable.is_set():
            await p.writable.wait()
        if p.close_sent or p.disconnected:
            raise ConnectionError("the WebSocket is closed")
        p.transport.write(b"".join([text_frame(f) for f in frames]))


def release_request(conn: ServerProtocol) -> bool:
    """websockets' parser generator keeps the handshake request (path with the token, every header)
    as a local for the life of the connection: ~1 KiB and nine tracked objects per idle connection.
    When it waits at a frame boundary (nothing of a frame read yet) it is swapped for a fresh frame
    parser, which is what it would run from there anyway; otherwise it is left alone."""
    frames = getattr(conn.parser, "gi_yieldfrom", None)
    waiting = getattr(frames, "gi_yieldfrom", None)
    if (
        getattr(frames, "gi_code", None) is not _PARSE_FRAMES
        or getattr(waiting, "gi_code", None) is not _AT_EOF
        or conn.reader.buffer
        or conn.reader.eof
    ):
        return False
    old, conn.parser = conn.parser, FrameParser.parse(conn)
    next(conn.parser)  # runs up to the same wait for the next frame's first byte
    old.close()  # its frame, and the request in it, go now
    return True


_PARSE_FRAMES = FrameParser.parse.__code__
_AT_EOF = StreamReader.at_eof.__code__


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, offering `pushwire.direct` in the ASGI scope."""

    detached = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """uvicorn's, with the addresses uvloop already has (web/http_protocol.py)."""
        self.connections.add(self)
        self.transport = cast(asyncio.Transport, transport)
        self.server, self.client = addresses(transport)
        self.scheme = "wss" if is_ssl(self.transport) else "ws"

    async def run_asgi(self) -> None:
        """uvicorn's, except that a detached connection stays open when the handler returns."""
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            self.logger.exception("Exception in ASGI application\n")
            self.send_500_response()
        else:
            if not self.handshake_complete:
                self.logger.error("ASGI callable returned without completing handshake.")
                self.send_500_response()
            elif result is not None:
                self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self.close_timer is None and not self.detached:
            self.transport.close()

    def send_receive_event_to_app(self) -> None:
        if not self.detached:
            super().send_receive_event_to_app()
            return
        # Detached: the relay hands the message to the inbox, which pauses reading itself when behind.
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return
        if self.curr_msg_data_type == "text":
            try:
                text = data.decode()
            except UnicodeDecodeError:
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
            self.queue.put_nowait({"type": "websocket.receive", "text": text})
        else:
            self.queue.put_nowait({"type": "websocket.receive", "bytes": data})

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        # The ASGI task that reads the scope starts on the next loop iteration: adding to it here
        # is seen by the app. A refused handshake (no scope) is left alone.
        if scope is not None and not self.close_sent:
            scope["extensions"][EXTENSION] = DirectWriter(self)
