"""One client connection: identity, subscriptions with per-channel positions, a bounded send queue.

The hub calls `offer` synchronously for every delivery (no task, no await per delivery); a
single writer task per session drains the queue in batches. A session whose queue passes its
byte limit is closed with 4008 and its queue dropped, so it never slows the others.

Replays (subscribe with `since`, unread, live gaps) run one at a time in a replay task, page by
page: the next page is read only when the queue and the batch being written are under
REPLAY_ROOM, so a client that does not read stops the reading. Everything held for a connection
— queue, batch being written, live messages held while their channel replays — is capped at
MAX_HELD_BYTES; past it the connection is closed with 4008.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from opentelemetry.trace import Span

from pushwire.realtime.channel_sub import ChannelSub
from pushwire.realtime.protocol import PING, Close
from pushwire.realtime.replay_lane import ReplayLane
from pushwire.realtime.send_queue import MAX_HELD_BYTES, REPLAY_ROOM, SendQueue
from pushwire.realtime.tokens import ClientIdentity
from pushwire.realtime.watched_spans import WatchedSpans

log = logging.getLogger(__name__)

DEFAULT_QUEUE_BYTES = 1024 * 1024
# Live messages held while a channel replays; past this the replay is abandoned (4008).
MAX_BUFFERED = 10_000
__all__ = ["DEFAULT_QUEUE_BYTES", "MAX_BUFFERED", "MAX_HELD_BYTES", "REPLAY_ROOM", "ChannelSub", "Session", "Transport"]


class Transport(Protocol):
    kind: str

    async def send_frames(self, frames: list[str]) -> None:
        """Send each frame in order; may block when the peer does not read."""

    async def close(self, code: int, reason: str) -> None: ...


class Session:
    # What a liveness tick sends a quiet client (the Pusher session sends `pusher:ping`).
    ping_frame = PING

    # Slots: one of these per connection, hundreds of thousands per instance.
    __slots__ = (
        "_closed",
        "_closed_event",
        "_closer",
        "_inflight",
        "_out",
        "_replays",
        "_started",
        "_try_send",
        "_watched",
        "_writer",
        "closing",
        "delivered",
        "id",
        "identity",
        "last_ping",
        "last_received",
        "on_closed",
        "on_gap",
        "subs",
        "transport",
    )

    def __init__(
        self,
        session_id: str,
        identity: ClientIdentity,
        transport: Transport,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        max_held: int = MAX_HELD_BYTES,
    ) -> None:
        self.id = session_id
        self.identity = identity
        self.transport = transport
        self.subs: dict[str, ChannelSub] = {}
        self._out = SendQueue(queue_bytes, max_held)
        self._replays: ReplayLane | None = None  # made by the first replay
        self.closing: tuple[int, str] | None = None
        self._closed = False
        self._closed_event: asyncio.Event | None = None  # made when someone waits for it
        self.last_received = time.monotonic()
        self.last_ping = 0.0
        self.delivered = 0
        # Runs only while frames wait (queued behind others, paused transport, replays): an idle
        # connection holds no task. None until start() for polling sessions, which never write.
        self._writer: asyncio.Task[None] | None = None
        self._started = False
        # Called once when the session has closed (the transport's reader stops waiting then).
        self.on_closed: Callable[[], None] | None = None
        # Called as on_gap(session, channel, last_delivered, missing_upto); set by Connections.
        self.on_gap: Callable[[Session, str, int, int], None] | None = None
        self._closer: asyncio.Task[None] | None = None
        # hub.deliver spans (a few per traced message) waiting for their frame to be sent.
        self._watched = WatchedSpans()
        self._inflight = 0  # frames of the batch being written
        # A transport that can write a frame at once (direct.py) takes live frames without the
        # writer task while nothing is queued before them: no wake-up, no coroutine per delivery.
        self._try_send: Callable[[str], bool] | None = getattr(transport, "try_send", None)

    @property
    def has_closed(self) -> bool:
        return self._closed

    @property
    def closed(self) -> asyncio.Event:
        """Set once the session has closed."""
        if self._closed_event is None:
            self._closed_event = asyncio.Event()
            if self._closed:
                self._closed_event.set()
        return self._closed_event

    @property
    def app_id(self) -> str:
        return self.identity.app_id

    @property
    def user_id(self) -> str:
        return self.identity.user_id

    # -- subscriptions --------------------------------------------------------
    def begin_subscription(self, channel: str) -> ChannelSub:
        """Start buffering live messages of `channel` until `finish_subscription`."""
        self._release(self.subs.get(channel))
        sub = ChannelSub()
        self.subs[channel] = sub
        return sub

    def drop_subscription(self, channel: str) -> None:
        self._release(self.subs.pop(channel, None))

    def _release(self, sub: ChannelSub | None) -> None:
        if sub is not None and sub.buffer is not None:
            self._out.buffered -= sub.buffered
            sub.buffer, sub.buffered = [], 0

    def finish_subscription(self, channel: str, position: int, replay: list[str], head: str | None) -> None:
        """Send `head` (the subscribed frame), the replay, then buffered live messages past it."""
        sub = self.subs.get(channel)
        if sub is None:
            return
        buffered = sub.buffer or []
        self._out.buffered -= sub.buffered
        sub.buffer, sub.buffered = None, 0
        sub.last = position
        if head is not None:
            self.enqueue(head)
        # Asked-for and already-held bytes: under the per-connection cap, not the slow-reader limit.
        self.enqueue_replay(replay)
        merged = []
        for offset, frame in buffered:
            if offset > sub.last:
                sub.last = offset
                merged.append(frame)
        self.enqueue_replay(merged)

    def offer(self, channel: str, offset: int, frame: str) -> None:
        sub = self.subs.get(channel)
        if sub is None or self.closing is not None:
            return
        if sub.buffer is not None:
            if len(sub.buffer) >= MAX_BUFFERED or not self._admit(len(frame)):
                self.close_soon(Close.SLOW_CONSUMER, "replay buffer full")
                return
            sub.buffer.append((offset, frame))
            sub.buffered += len(frame)
            self._out.buffered += len(frame)
        elif offset > sub.last:
            # Duplicates (bus redelivery, replay overlap) are at or below `last`: dropped here.
            if offset > sub.last + 1 and self.on_gap is not None:
                # Live skipped ahead (a bus hiccup): hold live and fill the hole from history.
                if not self._admit(len(frame)):
                    return
                sub.buffer, sub.buffered = [(offset, frame)], len(frame)
                self._out.buffered += len(frame)
                self.on_gap(self, channel, sub.last, offset - 1)
                return
            sub.last = offset
            self.enqueue(frame)

    # -- replays --------------------------------------------------------------
    def queue_replay(self, channel: str, run: Callable[[], Awaitable[None]]) -> None:
        """Run `run` after the replays before it; one still waiting for `channel` is dropped."""
        if self.closing is None:
            if self._replays is None:
                self._replays = ReplayLane(f"replay-{self.id}", self._replay_failed)
            self._replays.queue(channel, run)

    def _replay_failed(self) -> None:
        self.close_soon(Close.RECONNECT, "replay failed; resume with since")

    def cancel_replays(self) -> None:
        # Dropped, not only cancelled: the lane refers back to this session (a cycle).
        lane, self._replays = self._replays, None
        if lane is not None:
            lane.cancel()

    async def wait_for_room(self) -> bool:
        """Until a replay page may be read (False: the session is closing)."""
        while self.closing is None and not self._out.room.is_set():
            await self._out.room.wait()
        return self.closing is None

    @property
    def held(self) -> int:
        return self._out.total

    @property
    def peak_held(self) -> int:
        return self._out.peak

    def _admit(self, size: int) -> bool:
        """Room for `size` more bytes under the per-connection cap; else the connection closes (4008)."""
        if self._out.fits(size):
            return True
        self.close_soon(Close.SLOW_CONSUMER, "over the per-connection memory cap")
        return False

    # -- traced deliveries ----------------------------------------------------
    def pending_frames(self) -> int:
        return len(self._out.frames)

    def watch(self, span: Span) -> None:
        """End `span` once the frame just queued (the last one) has been sent."""
        marker = self.delivered + self._inflight + len(self._out.frames)
        if marker <= self.delivered:
            span.end()  # written at once (direct transport)
        else:
            self._watched.add(marker, span)

    def _sent(self) -> None:
        self._watched.sent(self.delivered)

    def end_watched(self, reason: str | None = None) -> None:
        """The queue was dropped or the session ended: unsent frames' spans end (ERROR with a reason)."""
        self._watched.end_all(reason)

    # -- polling transports (no writer task: the request handler drains) ------
    def drain(self, limit: int) -> list[str]:
        out = self._out.drain(limit)
        self.delivered += len(out)
        if self._watched:
            self._sent()
        return out

    def drain_ready(self) -> bool:
        return bool(self._out.frames)

    async def wait_for_frames(self, timeout: float) -> bool:
        if self._out.frames:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._out.wake.wait()
        except TimeoutError:
            return False
        return bool(self._out.frames)

    # -- sending --------------------------------------------------------------
    def enqueue(self, frame: str) -> None:
        if self.closing is not None:
            return
        if self._try_send is not None and not self._out.frames and not self._inflight and self._try_send(frame):
            self.delivered += 1
            return
        if (refused := self._out.push(frame)) is not None:
            self.close_soon(Close.SLOW_CONSUMER, refused)
            return
        self._kick()

    def enqueue_replay(self, frames: list[str]) -> None:
        """Frames the client asked for (a replay page), paced by `wait_for_room` rather than refused
        by the slow-reader limit; still under the per-connection cap."""
        if self.closing is None and frames:
            if (refused := self._out.push_paced(frames)) is not None:
                self.close_soon(Close.SLOW_CONSUMER, refused)
                return
            self._kick()

    def close_soon(self, code: int, reason: str) -> None:
        """Close now: drop anything queued (the client resumes with since) and stop the writer,
        even if it is blocked on a peer that does not read."""
        if self.closing is not None:
            return
        self.closing = (code, reason)
        for sub in self.subs.values():
            self._release(sub)
        # Wakes a long-poll waiting for frames (shutdown) and a replay waiting for room.
        self._out.clear()
        self.cancel_replays()
        if self._watched:
            self.end_watched(f"connection closed ({code}): {reason}")
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        self._closer = asyncio.get_running_loop().create_task(self._close(code, reason))

    def start(self) -> None:
        """The transport is open: frames queued before now, and from now on, are written."""
        self._started = True
        self._kick()

    def _kick(self) -> None:
        if (
            self._started
            and self.closing is None
            and self._out.frames
            and (self._writer is None or self._writer.done())
        ):
            self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name=f"writer-{self.id}")

    async def _write_loop(self) -> None:
        """Writes what is queued, batching what queued up while it was sending; ends when nothing is left."""
        try:
            while self._out.frames and self.closing is None:
                batch = self._out.take_all()
                self._inflight = len(batch)
                await self.transport.send_frames(batch)
                self._inflight = 0
                self._out.sent()
                self.delivered += len(batch)
                if self._watched:
                    self._sent()
        except (OSError, RuntimeError, ConnectionError) as exc:
            log.debug("session %s writer ended: %s", self.id, exc)
            self.closing = self.closing or (Close.NORMAL, "transport closed")
            self.end_watched(f"transport closed: {exc}")
            self._set_closed()

    def _set_closed(self) -> None:
        if not self._closed:
            self._closed = True
            if self._closed_event is not None:
                self._closed_event.set()
            if self.on_closed is not None:
                self.on_closed()

    async def _close(self, code: int, reason: str) -> None:
        try:
            writer = self._writer
            if writer is not None:
                await asyncio.gather(writer, return_exceptions=True)
                if self._writer is writer:
                    # A cancelled writer holds its CancelledError, whose traceback holds this session.
                    self._writer = None
            async with asyncio.timeout(2):
                await self.transport.close(code, reason)
        except (TimeoutError, OSError, RuntimeError, ConnectionError):
            pass  # a peer that does not read cannot take a close frame either
        finally:
            self._set_closed()
            self._closer = None

    async def stop(self) -> None:
        """The connection ended from the other side: stop the writer quietly."""
        self.closing = self.closing or (Close.NORMAL, "disconnected")
        self.cancel_replays()
        self._out.release_room()
        writer, self._writer = self._writer, None  # see _close: a cancelled task refers back here
        if writer is not None:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        if self._watched:
            self.end_watched("disconnected before the frame was sent")
        self._set_closed()
