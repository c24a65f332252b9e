"""Client protocol frames (spec section 3) and close codes, as msgspec Structs.

Close codes are named here and documented in docs/client-protocol.md; clients use them to
decide whether to reconnect (4500: at once, elsewhere), back off (4004, 4008) or stop (4001).
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

MAX_FRAME_BYTES = 64 * 1024
BAD_FRAMES_PER_MINUTE = 10
# Rooms one connection may be subscribed to, besides its personal channel and `broadcast`.
MAX_SUBSCRIPTIONS = 100
# Subscribe frames: a burst (a reconnect resubscribes every room at once), then this many a second.
# Over it a frame is refused with error `rate_limited`, counted like a malformed frame.
SUBSCRIBE_BURST = MAX_SUBSCRIPTIONS + 2
SUBSCRIBE_RATE = 10.0


class Close(enum.IntEnum):
    NORMAL = 1000
    TOO_BIG = 1009
    UNAUTHORIZED = 4001  # bad or expired token: get a new token before reconnecting
    BAD_FRAMES = 4002  # more than 10 malformed frames a minute
    HEARTBEAT_TIMEOUT = 4003  # silent for 2 x heartbeat: reconnect
    LIMIT = 4004  # app or per-user connection limit: back off
    SLOW_CONSUMER = 4008  # send buffer over the limit: reconnect and resume with since
    FORBIDDEN = 4403  # Origin refused, on servers that cannot answer the upgrade with HTTP 403
    RECONNECT = 4500  # server shutting down: reconnect (elsewhere) and resume with since


class Since(msgspec.Struct, frozen=True):
    epoch: str
    offset: int


# -- client → server ----------------------------------------------------------
class Subscribe(msgspec.Struct, frozen=True, tag_field="type", tag="subscribe", forbid_unknown_fields=True):
    channel: str
    since: Since | None = None


class Unsubscribe(msgspec.Struct, frozen=True, tag_field="type", tag="unsubscribe", forbid_unknown_fields=True):
    channel: str


class Ack(msgspec.Struct, frozen=True, tag_field="type", tag="ack", forbid_unknown_fields=True):
    channel: str
    offset: int


class Ping(msgspec.Struct, frozen=True, tag_field="type", tag="ping", forbid_unknown_fields=True):
    pass


class Pong(msgspec.Struct, frozen=True, tag_field="type", tag="pong", forbid_unknown_fields=True):
    pass


ClientFrame = Subscribe | Unsubscribe | Ack | Ping | Pong
CLIENT_FRAME_DECODER = msgspec.json.Decoder(ClientFrame)


# -- server → client ----------------------------------------------------------
class ChannelPosition(msgspec.Struct, frozen=True):
    epoch: str
    offset: int


class Welcome(msgspec.Struct, frozen=True, tag_field="type", tag="welcome"):
    user: str
    app: str
    session: str
    instance: str
    heartbeat: int
    channels: dict[str, ChannelPosition]


class Subscribed(msgspec.Struct, frozen=True, tag_field="type", tag="subscribed"):
    channel: str
    epoch: str
    offset: int
    recovered: bool
    replayed: int


class Unsubscribed(msgspec.Struct, frozen=True, tag_field="type", tag="unsubscribed"):
    channel: str


class Read(msgspec.Struct, frozen=True, tag_field="type", tag="read"):
    channel: str
    offset: int


class Error(msgspec.Struct, frozen=True, tag_field="type", tag="error", omit_defaults=True):
    code: str
    message: str = ""
    channel: str | None = None


class ServerPing(msgspec.Struct, frozen=True, tag_field="type", tag="ping"):
    pass


class ServerPong(msgspec.Struct, frozen=True, tag_field="type", tag="pong"):
    pass


ENCODER = msgspec.json.Encoder()


def encode(frame: Any) -> str:
    """Frames are text: WebSocket clients expect text frames, and SSE/long-poll bodies are text."""
    return ENCODER.encode(frame).decode()


PONG = encode(ServerPong())
PING = encode(ServerPing())
