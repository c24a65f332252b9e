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
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

EXTENSION = "pushwire.direct"


def text_frame(text: str) -> bytes:
    """A final, unmasked text frame (RFC 6455 §5.2) carrying `text`."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65_536:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload


class DirectWriter:
    """Writes whole frames to one accepted connection's transport, in order."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
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


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, offering `pushwire.direct` in the ASGI scope."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        # The ASGI task that reads the scope starts on the next loop iteration: adding to it here
        # is seen by the app. A refused handshake (no scope) is left alone.
        if scope is not None and not self.close_sent:
            scope["extensions"][EXTENSION] = DirectWriter(self)
