"""A Pusher connection's session: the platform Session, speaking Pusher frames and close codes.

Live platform messages become Pusher frames here (frames.channel_frame, once per message per
instance); the connection a message excludes (its `socket_id`) skips it. Nothing is replayed:
a subscription starts at the live edge and a gap is not filled (Pusher semantics; the platform
still holds every message for native clients and the console).
"""

from __future__ import annotations

from typing import Any

from pushwire.pusher import frames as f
from pushwire.realtime.protocol import Close
from pushwire.realtime.session import Session
from pushwire.tenants.key_cache import KeyEntry

# The platform's close codes, in Pusher's ranges (notes §1.8): pusher-js stays down on 40xx and
# on anything from 4300, backs off on 41xx and reconnects at once on 42xx.
_CODES: dict[int, int] = {
    Close.UNAUTHORIZED: f.Code.UNKNOWN_KEY,  # the key was revoked
    Close.BAD_FRAMES: f.Code.BACK_OFF,
    Close.HEARTBEAT_TIMEOUT: f.Code.PONG_TIMEOUT,
    Close.LIMIT: f.Code.OVER_QUOTA,
    Close.SLOW_CONSUMER: f.Code.BACK_OFF,
    Close.FORBIDDEN: f.Code.UNAUTHORIZED,
    Close.RECONNECT: f.Code.RECONNECT,
}


class PusherSession(Session):
    __slots__ = ("client_events", "entry", "members", "protocol", "signed_in", "subscribes")

    ping_frame = f.PING

    def __init__(self, socket_id: str, entry: KeyEntry, protocol: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(socket_id, *args, **kwargs)
        self.entry = entry  # the key the client connected with (/app/{key})
        self.protocol = protocol
        self.signed_in: str | None = None  # pusher:signin's user id
        # Presence channels joined: Pusher channel name → the member's user id.
        self.members: dict[str, str] = {}
        # Token buckets (tokens, when last counted): client events, subscribe frames.
        self.client_events = (float(CLIENT_EVENT_BURST), 0.0)
        self.subscribes = (float(SUBSCRIBE_BURST), 0.0)
        self.on_gap = None  # no gap filling: Pusher clients get live messages only

    def offer(self, channel: str, offset: int, frame: str) -> None:
        converted = f.channel_frame(frame)
        if converted.socket_id == self.id:
            sub = self.subs.get(channel)
            if sub is not None and sub.buffer is None and offset > sub.last:
                sub.last = offset  # its own trigger or client event: never echoed
            return
        super().offer(channel, offset, converted.text)

    def close_soon(self, code: int, reason: str) -> None:
        """The platform's closes (slow consumer, shutdown, ...) in Pusher's codes."""
        super().close_soon(_CODES.get(code, code), reason)

    def end(self, code: f.Code, reason: str) -> None:
        """Close with a Pusher code as it is (some share numbers with platform codes)."""
        super().close_soon(int(code), reason)


CLIENT_EVENT_RATE = 10.0  # per second per connection, as Pusher
CLIENT_EVENT_BURST = 10
SUBSCRIBE_RATE = 10.0
SUBSCRIBE_BURST = 102
