"""The Hub: this instance's connections by app → user → sessions, and channel → subscribers.

No I/O here: delivery is a dictionary lookup and a synchronous `offer` per subscriber, so one
message costs one encode (done upstream) plus one append per connection.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from pushwire.names import is_room
from pushwire.realtime.protocol import Close
from pushwire.realtime.session import Session
from pushwire.realtime.tokens import ClientIdentity

if TYPE_CHECKING:
    from pushwire.tracing.delivery import DeliveryTrace


# Transports whose quiet clients are pinged (the polling ones poll instead).
PINGED = frozenset(("ws", "pusher"))


class Hub:
    def __init__(self, expired: Callable[[ClientIdentity], bool] | None = None) -> None:
        # Whether a connection's token has expired (ClientTokenVerifier.expired, exp + leeway):
        # `tick` closes those with 4001. Set by the runtime; None checks nothing.
        self.expired = expired
        self.sessions: dict[str, Session] = {}
        self._users: dict[str, dict[str, set[Session]]] = defaultdict(lambda: defaultdict(set))
        self._subscribers: dict[tuple[str, str], set[Session]] = defaultdict(set)
        self.delivered = 0
        # Channels whose subscriber counts changed since the Pusher occupancy last read them
        # (not a connect's personal channel and `broadcast`: nobody lists those).
        self.changed: set[tuple[str, str]] = set()

    # -- membership -----------------------------------------------------------
    def attach(self, session: Session) -> None:
        self.sessions[session.id] = session
        self._users[session.app_id][session.user_id].add(session)

    def detach(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        session.cancel_replays()
        session.end_watched()  # a poll's frames not drained: its hub.deliver spans end here
        for channel in list(session.subs):
            self.unsubscribe(session, channel)
        users = self._users.get(session.app_id)
        if users is not None:
            mine = users.get(session.user_id)
            if mine is not None:
                mine.discard(session)
                if not mine:
                    del users[session.user_id]
            if not users:
                del self._users[session.app_id]

    def subscribe(self, session: Session, channel: str) -> None:
        """Buffered until the caller finishes the subscription (after its replay)."""
        session.begin_subscription(channel)
        key = (session.app_id, channel)
        self._subscribers[key].add(session)
        if is_room(channel):
            self.changed.add(key)

    def unsubscribe(self, session: Session, channel: str) -> None:
        session.drop_subscription(channel)
        key = (session.app_id, channel)
        subs = self._subscribers.get(key)
        if subs is not None:
            subs.discard(session)
            if is_room(channel):
                self.changed.add(key)
            if not subs:
                del self._subscribers[key]

    # -- delivery -------------------------------------------------------------
    def has_subscribers(self, app_id: str, channel: str) -> bool:
        return (app_id, channel) in self._subscribers

    def deliver(self, app_id: str, channel: str, offset: int, frame: str, trace: DeliveryTrace | None = None) -> int:
        """`trace` (sampled messages only) adds hub.deliver spans for the first few connections."""
        subs = self._subscribers.get((app_id, channel))
        if not subs:
            return 0
        if trace is not None:
            trace.offer_all(tuple(subs), channel, offset, frame)
        else:
            for session in tuple(subs):
                session.offer(channel, offset, frame)
        self.delivered += len(subs)
        return len(subs)

    def subscriber_count(self, app_id: str, channel: str) -> int:
        return len(self._subscribers.get((app_id, channel), ()))

    def user_sessions(self, app_id: str, user_id: str) -> Iterable[Session]:
        return tuple(self._users.get(app_id, {}).get(user_id, ()))

    def count(self, app_id: str | None = None) -> int:
        if app_id is None:
            return len(self.sessions)
        return sum(len(s) for s in self._users.get(app_id, {}).values())

    # -- liveness -------------------------------------------------------------
    def tick(self, heartbeat: float, now: float | None = None) -> list[Session]:
        """Ping quiet sessions; close those silent for 2 x heartbeat, and those whose token has
        expired (4001: renew the token, reconnect with since). Returns the closed ones."""
        now = time.monotonic() if now is None else now
        expired = self.expired
        dead = []
        for session in tuple(self.sessions.values()):
            if session.closing is not None:
                continue
            if expired is not None and expired(session.identity):
                session.close_soon(Close.UNAUTHORIZED, "token expired")
                dead.append(session)
            elif now - session.last_received > 2 * heartbeat and (
                session.transport.kind not in PINGED
                or (session.last_ping > session.last_received and now - session.last_ping >= heartbeat / 2)
            ):
                # A WebSocket client is closed only after a ping it left unanswered for half a
                # heartbeat: if this loop stalled past its ping window, the client is pinged first.
                session.close_soon(Close.HEARTBEAT_TIMEOUT, "no frame from the client for 2 x heartbeat")
                dead.append(session)
            elif (
                session.transport.kind in PINGED
                and now - session.last_received >= heartbeat
                and now - session.last_ping >= heartbeat
            ):
                # Ping when the client has been quiet (not when we have): a client that only
                # answers pings must get one before 2 x heartbeat, even while we stream to it.
                session.last_ping = now
                session.enqueue(session.ping_frame)
        return dead

    def close_all(self, code: int, reason: str) -> None:
        for session in tuple(self.sessions.values()):
            session.close_soon(code, reason)
