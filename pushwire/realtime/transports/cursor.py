"""The stateless long-poll/SSE cursor: channel positions, bound to app and user, HMAC-authenticated.

Any instance holding the server secret can verify it, so polls need no sticky sessions and a
restart loses nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import msgspec


class Cursor(msgspec.Struct, frozen=True, array_like=True):
    app: str
    user: str
    session: str
    # channel → (epoch, offset) of the last message delivered
    positions: dict[str, tuple[str, int]]


class CursorError(Exception):
    pass


_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder(Cursor)
_MAC_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    def __init__(self, server_secret: str) -> None:
        self._key = hashlib.sha256(b"pushwire cursors v1\x00" + server_secret.encode()).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, cursor: Cursor) -> str:
        payload = _ENC.encode(cursor)
        return _b64(payload + self._mac(payload))

    def decode(self, text: str, app_id: str, user_id: str) -> Cursor:
        try:
            raw = _unb64(text)
        except (ValueError, TypeError):
            raise CursorError("cursor is not valid base64") from None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, self._mac(payload)):
            raise CursorError("cursor failed its integrity check")
        try:
            cursor = _DEC.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise CursorError("cursor is malformed") from None
        if cursor.app != app_id or cursor.user != user_id:
            raise CursorError("cursor belongs to another app or user")
        return cursor
