"""What happens on a connection, whatever the transport: open, frames, close.

Open: limits, presence route, personal channel and `broadcast` subscribed, welcome, then the
user's unread personal messages (after their acknowledged offset). Frames: subscribe with
recovery (at most MAX_SUBSCRIPTIONS rooms, SUBSCRIBE_BURST then SUBSCRIBE_RATE a second),
unsubscribe, ack (stored, echoed to the user's other connections), ping. Replays run paged in
the session's replay task (catch_up.py).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

import msgspec

from pushwire import ids
from pushwire.errors import BackendUnavailable
from pushwire.messaging.history import ChannelState
from pushwire.names import BROADCAST, is_channel, personal_channel
from pushwire.presence.slots import RouteSlots
from pushwire.presence.store import PresenceStore
from pushwire.realtime import protocol as p
from pushwire.realtime.acks import AckStore
from pushwire.realtime.catch_up import CatchUp
from pushwire.realtime.hub import Hub
from pushwire.realtime.read_sync import ReadSync
from pushwire.realtime.recovery import Recovery
from pushwire.realtime.session import Session, Transport
from pushwire.realtime.tokens import ClientIdentity
from pushwire.tracing.acks import AckTracer

log = logging.getLogger(__name__)


class LimitReached(Exception):
    pass


class Connections:
    def __init__(
        self,
        hub: Hub,
        recovery: Recovery,
        acks: AckStore,
        presence: PresenceStore,
        slots: RouteSlots,
        instance_id: str,
        heartbeat: int,
        ack_tracer: AckTracer | None = None,
    ) -> None:
        self.hub = hub
        self.slots = slots
        # Set by the runtime: tells the user's connections on other instances about acks.
        self.read_sync: ReadSync | None = None
        self.recovery = recovery
        self.acks = acks
        self.presence = presence
        self.instance_id = instance_id
        self.heartbeat = heartbeat
        self.ack_tracer = ack_tracer
        self.catch_up = CatchUp(recovery, hub)
        self._bad_frames: dict[str, deque[float]] = {}
        # Subscribe frames' token bucket per session: (tokens, when last counted).
        self._subscribe_budget: dict[str, tuple[float, float]] = {}
        self.gaps_filled = 0

    async def admit(self, identity: ClientIdentity, transport: str, session_id: str | None = None) -> str:
        """A new session's id (`session_id` if given: a Pusher socket id) with its route written, or
        LimitReached when the app or the user has no connection to spare (checked and written in
        one batched transaction: presence/slots.py)."""
        session_id = session_id or ids.session_id()
        refused = await self.slots.take(
            session_id,
            identity.app_id,
            identity.user_id,
            transport,
            identity.max_connections,
            identity.max_connections_per_user,
        )
        if refused is not None:
            raise LimitReached(refused)
        return session_id

    async def check_limits(self, identity: ClientIdentity, session_id: str | None = None) -> None:
        """Polls: raise LimitReached when the app or the user has no connection to spare (`session_id`'s
        own route, a continuing poll session's, is not counted against it)."""
        app, user = await self.presence.counts(identity.app_id, identity.user_id, session_id)
        if app >= identity.max_connections:
            raise LimitReached("the app is at its connection limit")
        if user >= identity.max_connections_per_user:
            raise LimitReached("this user is at the per-user connection limit")

    def fill_gap(self, session: Session, channel: str, last: int, upto: int) -> None:
        sub = session.subs.get(channel)
        if sub is not None:
            session.queue_replay(channel, lambda: self._fill_gap(session, channel, sub, last, upto))

    async def _fill_gap(self, session: Session, channel: str, sub: object, last: int, upto: int) -> None:
        if session.subs.get(channel) is not sub:
            return
        self.gaps_filled += 1
        try:
            state = (await self.recovery.state(session.app_id, [channel]))[channel]
        except BackendUnavailable:
            session.close_soon(p.Close.RECONNECT, "could not fill a delivery gap; resume with since")
            return
        current = session.subs.get(channel)
        if current is not sub or current is None:
            return
        bounded = ChannelState(epoch=state.epoch, top=min(upto, state.top))
        await self.catch_up.run(session, channel, current, None, last, bounded, announce=False, lost_to=upto)

    async def open(self, identity: ClientIdentity, transport: Transport, session_id: str) -> Session:
        """The session of an admitted connection (`admit` wrote its route; `close` removes it)."""
        session = Session(session_id, identity, transport)
        session.on_gap = self.fill_gap
        personal = personal_channel(identity.user_id)
        self.hub.attach(session)
        # Subscribed (buffering) before reading positions, so nothing published meanwhile is missed.
        self.hub.subscribe(session, personal)
        self.hub.subscribe(session, BROADCAST)
        try:
            states = await self.recovery.state(identity.app_id, [personal, BROADCAST])
            # Nothing was ever sent to the user: no unread range, no ack to read.
            acked = await self.acks.get(identity.app_id, identity.user_id, personal) if states[personal].top else 0
        except BaseException:
            self.hub.detach(session)
            raise
        welcome = p.Welcome(
            user=identity.user_id,
            app=identity.app_id,
            session=session.id,
            instance=self.instance_id,
            heartbeat=self.heartbeat,
            channels={ch: p.ChannelPosition(epoch=st.epoch, offset=st.top) for ch, st in states.items()},
        )
        session.enqueue(p.encode(welcome))
        session.finish_subscription(BROADCAST, states[BROADCAST].top, [], None)
        # Unread compensation, paged. If the unread range can no longer be filled, it says so.
        if acked == states[personal].top:  # nothing unread: live at once, no replay task
            session.finish_subscription(personal, acked, [], None)
        else:
            sub = session.subs[personal]
            session.queue_replay(
                personal,
                lambda: self.catch_up.run(session, personal, sub, None, acked, states[personal], announce=False),
            )
        session.start()
        return session

    async def close(self, session: Session, seen: bool = True) -> None:
        session.end_watched("disconnected before the frame was sent")  # traced deliveries still queued
        self.hub.detach(session)
        self._bad_frames.pop(session.id, None)
        self._subscribe_budget.pop(session.id, None)
        await session.stop()
        await self.release(session.id, session.app_id, session.user_id, seen)

    async def release(self, session_id: str, app_id: str, user_id: str, seen: bool = True) -> None:
        """Give an admitted session's route back (also when it never opened). `seen`: record the
        user's last-seen time (not for an anonymous Pusher connection, a user of one connection)."""
        try:
            if seen:
                await self.presence.mark_left(app_id, user_id)
        except BackendUnavailable as exc:
            log.warning("last-seen of %s not written (%s)", user_id, exc)
        try:
            await self.slots.give_back(session_id, app_id, user_id)
        except BackendUnavailable as exc:
            log.warning("presence route of %s not removed now (%s); the sweep will", session_id, exc)

    # -- frames ---------------------------------------------------------------
    def receive(self, session: Session, text: str | None, data: bytes | None) -> Coroutine[Any, Any, None] | None:
        """One WebSocket message: handled now, or the coroutine that finishes it (subscribe, ack)."""
        raw = text.encode() if text is not None else (data or b"")  # encoded once: measured, then decoded
        if len(raw) > p.MAX_FRAME_BYTES:
            session.close_soon(p.Close.TOO_BIG, "frame over 64 KiB")
            return None
        if text is None:
            self.bad_frame(session, "frames are JSON text, not binary")
            return None
        return self.handle_now(session, raw)

    def handle_now(self, session: Session, data: bytes) -> Coroutine[Any, Any, None] | None:
        """Frames that need no I/O are handled here and now; the others are returned to be awaited
        in order (realtime/inbox.py), so a ping costs no task and no coroutine."""
        session.last_received = time.monotonic()
        try:
            frame = p.CLIENT_FRAME_DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.bad_frame(session, str(exc))
            return None
        if isinstance(frame, p.Ping):
            session.enqueue(p.PONG)
        elif isinstance(frame, p.Pong):
            pass
        elif isinstance(frame, p.Subscribe):
            return self.subscribe(session, frame.channel, frame.since)
        elif isinstance(frame, p.Unsubscribe):
            self.hub.unsubscribe(session, frame.channel)
            session.enqueue(p.encode(p.Unsubscribed(channel=frame.channel)))
        elif isinstance(frame, p.Ack):
            return self.ack(session, frame.channel, frame.offset)
        return None

    def bad_frame(self, session: Session, message: str) -> None:
        self.refuse(session, "bad_frame", message[:200])

    def refuse(self, session: Session, code: str, message: str, channel: str | None = None) -> None:
        """An error frame that counts towards the malformed-frame budget (over it: close 4002)."""
        now = time.monotonic()
        recent = self._bad_frames.setdefault(session.id, deque())
        recent.append(now)
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) > p.BAD_FRAMES_PER_MINUTE:
            session.close_soon(p.Close.BAD_FRAMES, "too many malformed or refused frames")
            return
        session.enqueue(p.encode(p.Error(code=code, message=message, channel=channel)))

    def _may_subscribe_now(self, session: Session) -> bool:
        now = time.monotonic()
        tokens, at = self._subscribe_budget.get(session.id, (float(p.SUBSCRIBE_BURST), now))
        tokens = min(float(p.SUBSCRIBE_BURST), tokens + (now - at) * p.SUBSCRIBE_RATE)
        allowed = tokens >= 1
        self._subscribe_budget[session.id] = (tokens - 1 if allowed else tokens, now)
        return allowed

    async def subscribe(self, session: Session, channel: str, since: p.Since | None) -> None:
        if not self._may_subscribe_now(session):
            self.refuse(session, "rate_limited", f"at most {p.SUBSCRIBE_RATE:g} subscribe frames a second", channel)
            return
        if not is_channel(channel):
            self.bad_frame(session, f"invalid channel name {channel[:170]!r}")
            return
        if not session.identity.may_subscribe(channel):
            session.enqueue(p.encode(p.Error(code="forbidden", message="not allowed by the token", channel=channel)))
            return
        if channel not in session.subs and _rooms(session) >= p.MAX_SUBSCRIPTIONS:
            msg = f"at most {p.MAX_SUBSCRIPTIONS} rooms per connection"
            self.refuse(session, "too_many_subscriptions", msg, channel)
            return
        self.hub.subscribe(session, channel)
        sub = session.subs[channel]
        try:
            state = (await self.recovery.state(session.app_id, [channel]))[channel]
        except BackendUnavailable:
            self.hub.unsubscribe(session, channel)
            session.enqueue(p.encode(p.Error(code="unavailable", message="try again", channel=channel)))
            return
        if session.subs.get(channel) is not sub:
            return  # subscribed again (or unsubscribed) meanwhile
        if since is None:
            head = p.Subscribed(channel=channel, epoch=state.epoch, offset=state.top, recovered=False, replayed=0)
            session.finish_subscription(channel, state.top, [], p.encode(head))
            return
        session.queue_replay(
            channel,
            lambda: self.catch_up.run(session, channel, sub, since.epoch, since.offset, state, announce=True),
        )

    async def ack(self, session: Session, channel: str, offset: int) -> None:
        sub = session.subs.get(channel)
        if sub is None or offset < 0 or offset > max(sub.last, 0):
            self.bad_frame(session, "ack a subscribed channel, at most the last offset delivered")
            return
        start_ns = time.time_ns()
        stored = await self.acks.advance(session.app_id, session.user_id, channel, offset)
        frame = p.encode(p.Read(channel=channel, offset=stored))
        for other in self.hub.user_sessions(session.app_id, session.user_id):
            if other is not session:
                other.enqueue(frame)
        if self.read_sync is not None:
            self.read_sync.notify(session.identity.tenant_id, session.app_id, session.user_id, channel, stored)
        if self.ack_tracer is not None:
            await self.ack_tracer.ack(
                session.app_id, session.user_id, channel, offset, stored, start_ns, session.transport.kind
            )


def _rooms(session: Session) -> int:
    personal = personal_channel(session.user_id)
    return sum(1 for ch in session.subs if ch != personal and ch != BROADCAST)
