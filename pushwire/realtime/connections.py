"""What happens on a connection, whatever the transport: open, frames, close.

Open: limits, presence route, personal channel and `broadcast` subscribed, welcome, then the
user's unread personal messages (after their acknowledged offset). Frames: subscribe with
recovery, unsubscribe, ack (stored, echoed to the user's other connections), ping.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import msgspec

from pushwire import ids
from pushwire.errors import BackendUnavailable
from pushwire.messaging.history import ChannelState
from pushwire.names import BROADCAST, is_channel, personal_channel
from pushwire.presence.store import PresenceStore
from pushwire.realtime import protocol as p
from pushwire.realtime.acks import AckStore
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
        instance_id: str,
        heartbeat: int,
        ack_tracer: AckTracer | None = None,
    ) -> None:
        self.hub = hub
        # Set by the runtime: tells the user's connections on other instances about acks.
        self.read_sync: ReadSync | None = None
        self.recovery = recovery
        self.acks = acks
        self.presence = presence
        self.instance_id = instance_id
        self.heartbeat = heartbeat
        self.ack_tracer = ack_tracer
        self._bad_frames: dict[str, deque[float]] = {}
        self._gap_tasks: set[asyncio.Task[None]] = set()
        self.gaps_filled = 0

    async def check_limits(self, identity: ClientIdentity) -> None:
        if await self.presence.count(identity.app_id) >= identity.max_connections:
            raise LimitReached("the app is at its connection limit")
        if await self.presence.count(identity.app_id, identity.user_id) >= identity.max_connections_per_user:
            raise LimitReached("this user is at the per-user connection limit")

    def fill_gap(self, session: Session, channel: str, last: int, upto: int) -> None:
        task = asyncio.get_running_loop().create_task(self._fill_gap(session, channel, last, upto))
        self._gap_tasks.add(task)
        task.add_done_callback(self._gap_tasks.discard)

    async def _fill_gap(self, session: Session, channel: str, last: int, upto: int) -> None:
        self.gaps_filled += 1
        try:
            state = (await self.recovery.state(session.app_id, [channel]))[channel]
            bounded = ChannelState(epoch=state.epoch, top=min(upto, state.top))
            replay = await self.recovery.replay(session.app_id, channel, None, last, bounded)
        except BackendUnavailable:
            session.close_soon(p.Close.RECONNECT, "could not fill a delivery gap; resume with since")
            return
        head = None
        if not replay.recovered:
            head = p.encode(p.Subscribed(channel=channel, epoch=state.epoch, offset=upto, recovered=False, replayed=0))
        session.finish_subscription(channel, replay.top if replay.recovered else upto, replay.messages, head)

    async def open(self, identity: ClientIdentity, transport: Transport) -> Session:
        session = Session(ids.session_id(), identity, transport)
        session.on_gap = self.fill_gap
        personal = personal_channel(identity.user_id)
        self.hub.attach(session)
        # Subscribed (buffering) before reading positions, so nothing published meanwhile is missed.
        self.hub.subscribe(session, personal)
        self.hub.subscribe(session, BROADCAST)
        try:
            await self.presence.add(session.id, identity.app_id, identity.user_id, self.instance_id, transport.kind)
            states = await self.recovery.state(identity.app_id, [personal, BROADCAST])
            acked = await self.acks.get(identity.app_id, identity.user_id, personal)
            replay = await self.recovery.replay(identity.app_id, personal, None, acked, states[personal])
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
        # Unread compensation. If the unread range can no longer be filled, say so explicitly.
        head = None
        if not replay.recovered:
            head = p.encode(
                p.Subscribed(channel=personal, epoch=replay.epoch, offset=replay.top, recovered=False, replayed=0)
            )
        session.finish_subscription(personal, replay.top, replay.messages, head)
        session.finish_subscription(BROADCAST, states[BROADCAST].top, [], None)
        session.start()
        return session

    async def close(self, session: Session) -> None:
        session.end_watched("disconnected before the frame was sent")  # traced deliveries still queued
        self.hub.detach(session)
        self._bad_frames.pop(session.id, None)
        await session.stop()
        try:
            await self.presence.remove(session.id, session.app_id, session.user_id)
        except BackendUnavailable as exc:
            log.warning("presence route of %s not removed now (%s); the sweep will", session.id, exc)

    # -- frames ---------------------------------------------------------------
    async def handle(self, session: Session, raw: bytes | str) -> None:
        session.last_received = time.monotonic()
        data = raw.encode() if isinstance(raw, str) else raw
        try:
            frame = p.CLIENT_FRAME_DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.bad_frame(session, str(exc))
            return
        if isinstance(frame, p.Ping):
            session.enqueue(p.PONG)
        elif isinstance(frame, p.Pong):
            pass
        elif isinstance(frame, p.Subscribe):
            await self.subscribe(session, frame.channel, frame.since)
        elif isinstance(frame, p.Unsubscribe):
            self.hub.unsubscribe(session, frame.channel)
            session.enqueue(p.encode(p.Unsubscribed(channel=frame.channel)))
        elif isinstance(frame, p.Ack):
            await self.ack(session, frame.channel, frame.offset)

    def bad_frame(self, session: Session, message: str) -> None:
        now = time.monotonic()
        recent = self._bad_frames.setdefault(session.id, deque())
        recent.append(now)
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) > p.BAD_FRAMES_PER_MINUTE:
            session.close_soon(p.Close.BAD_FRAMES, "too many malformed frames")
            return
        session.enqueue(p.encode(p.Error(code="bad_frame", message=message[:200])))

    async def subscribe(self, session: Session, channel: str, since: p.Since | None) -> None:
        if not is_channel(channel):
            self.bad_frame(session, f"invalid channel name {channel[:170]!r}")
            return
        if not session.identity.may_subscribe(channel):
            session.enqueue(p.encode(p.Error(code="forbidden", message="not allowed by the token", channel=channel)))
            return
        self.hub.subscribe(session, channel)
        try:
            state = (await self.recovery.state(session.app_id, [channel]))[channel]
            if since is None:
                replay_msgs, recovered, top = [], False, state.top
            else:
                replay = await self.recovery.replay(session.app_id, channel, since.epoch, since.offset, state)
                replay_msgs, recovered, top = replay.messages, replay.recovered, replay.top
        except BackendUnavailable:
            self.hub.unsubscribe(session, channel)
            session.enqueue(p.encode(p.Error(code="unavailable", message="try again", channel=channel)))
            return
        head = p.encode(
            p.Subscribed(channel=channel, epoch=state.epoch, offset=top, recovered=recovered, replayed=len(replay_msgs))
        )
        session.finish_subscription(channel, top, replay_msgs, head)

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
