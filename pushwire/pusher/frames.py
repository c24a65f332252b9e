"""Pusher wire frames (notes §1–3): what a Pusher connection is sent and what it sends.

Server-sent `pusher_internal:*` and `connection_established` payloads are JSON-encoded strings
inside the frame (double encoding), as every Pusher client expects; `pusher:error` carries an object
(Pysher indexes into it). A platform message becomes `{"event","channel","data"}` once per message
per instance (`channel_frame`, keyed by the frame's identity, as the hub hands the same string to
every subscriber).
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from pushwire.pusher.names import pusher_channel

MAX_FRAME_BYTES = 64 * 1024
# Pusher's event data limit (HTTP API and client events).
MAX_DATA_BYTES = 10 * 1024


class Code(enum.IntEnum):
    """`pusher:error` codes and close codes, in Pusher's ranges (notes §1.8): 40xx stay down,
    41xx back off, 42xx reconnect now, 43xx errors that keep the connection."""

    UNKNOWN_KEY = 4001
    APP_DISABLED = 4003
    OVER_QUOTA = 4004
    UNSUPPORTED_PROTOCOL = 4007
    NO_PROTOCOL = 4008
    UNAUTHORIZED = 4009
    BACK_OFF = 4100
    RECONNECT = 4200
    PONG_TIMEOUT = 4201
    CLIENT_EVENT_REJECTED = 4301


# -- client → server ----------------------------------------------------------
class Incoming(msgspec.Struct, frozen=True):
    event: str
    data: msgspec.Raw = msgspec.Raw(b"null")
    channel: str | None = None


class SubscribeData(msgspec.Struct, frozen=True):
    channel: str
    auth: str | None = None
    channel_data: str | None = None


class SigninData(msgspec.Struct, frozen=True):
    auth: str
    user_data: str


class PresenceData(msgspec.Struct, frozen=True):
    """A presence subscription's `channel_data`; user ids come as strings or numbers."""

    user_id: str | int
    user_info: dict[str, Any] | None = None


class UserData(msgspec.Struct, frozen=True):
    id: str
    user_info: dict[str, Any] | None = None
    watchlist: list[str] | None = None


INCOMING = msgspec.json.Decoder(Incoming)
SUBSCRIBE = msgspec.json.Decoder(SubscribeData)
SIGNIN = msgspec.json.Decoder(SigninData)
PRESENCE = msgspec.json.Decoder(PresenceData)
USER_DATA = msgspec.json.Decoder(UserData)


# -- server → client ----------------------------------------------------------
class Outgoing(msgspec.Struct, frozen=True, omit_defaults=True):
    event: str
    channel: str | None = None
    data: msgspec.Raw | None = None
    user_id: str | None = None


_ENCODER = msgspec.json.Encoder()


def frame(event: str, data: Any = None, channel: str | None = None, *, encoded: bool = True) -> str:
    """A server frame; `data` JSON-encoded into a string when `encoded` (pusher_internal, established)."""
    raw = None
    if data is not None:
        raw = msgspec.Raw(_ENCODER.encode(_ENCODER.encode(data).decode() if encoded else data))
    return _ENCODER.encode(Outgoing(event=event, channel=channel, data=raw)).decode()


def error(code: int | None, message: str, channel: str | None = None) -> str:
    return frame("pusher:error", {"code": code, "message": message}, channel, encoded=False)


def subscription_error(channel: str, kind: str, message: str, status: int) -> str:
    return frame(
        "pusher:subscription_error", {"type": kind, "error": message, "status": status}, channel, encoded=False
    )


PONG = frame("pusher:pong", {}, encoded=False)
PING = frame("pusher:ping", {}, encoded=False)


# -- platform messages → Pusher frames ------------------------------------------
class _Message(msgspec.Struct, frozen=True):
    """The fields of a platform ClientMessage a Pusher frame needs (the rest is skipped)."""

    channel: str
    event: str
    data: msgspec.Raw
    socket_id: str | None = None
    user_id: str | None = None


_MESSAGE = msgspec.json.Decoder(_Message)


class ChannelFrame(msgspec.Struct, frozen=True):
    text: str
    socket_id: str | None  # the connection not to deliver to


class _Last:
    """The last message converted: a delivery hands the same string to every subscriber."""

    message: str | None = None
    result = ChannelFrame("", None)


def channel_frame(message: str) -> ChannelFrame:
    """The Pusher frame of a platform message (ClientMessage JSON)."""
    if message is _Last.message:
        return _Last.result
    m = _MESSAGE.decode(message)
    data = bytes(m.data)
    if not data.startswith(b'"') and not m.event.startswith("client-"):
        # Pusher sends published data as a string: a native push's JSON value goes as its text.
        # Client events keep the data their sender gave, as Pusher relays them.
        data = _ENCODER.encode(data.decode())
    out = Outgoing(event=m.event, channel=pusher_channel(m.channel), data=msgspec.Raw(data), user_id=m.user_id)
    result = ChannelFrame(_ENCODER.encode(out).decode(), m.socket_id)
    _Last.message, _Last.result = message, result
    return result
