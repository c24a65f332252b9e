"""One client connection: identity, subscriptions with per-channel positions, a bounded send queue.

The hub calls `offer` synchronously for every delivery (no task, no await per delivery); a
single writer task per session drains the queue in batches. A session whose queue passes its
byte limit is closed with 4008 and its queue dropped, so it never slows the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from opentelemetry.trace import Span, Status, StatusCode

from pushwire.realtime.protocol import Close
from pushwire.realtime.tokens import ClientIdentity

log = logging.getLogger(__name__)

DEFAULT_QUEUE_BYTES = 1024 * 1024
# Live messages held while a channel replays; past this the replay is abandoned (4008).
MAX_BUFFERED = 10_000


class Transport(Protocol):
    kind: str

    async def send_frames(self, frames: list[str]) -> None:
        """Send each frame in order; may block when the peer does not read."""

    async def close(self, code: int, reason: str) -> None: ...


class ChannelSub:
    """Position of one subscription. While `buffer` is a list the channel is replaying."""

    __slots__ = ("buffer", "last")

    def __init__(self) -> None:
        self.last = 0
        self.buffer: list[tuple[int, str]] | None = []


class Session:
    def __init__(
        self, session_id: str, identity: ClientIdentity, transport: Transport, queue_bytes: int = DEFAULT_QUEUE_BYTES
    ) -> None:
        self.id = session_id
        self.identity = identity
        self.transport = transport
        self.subs: dict[str, ChannelSub] = {}
        self._queue: deque[str] = deque()
        self._queued = 0
        self._limit = queue_bytes
        # Bytes of replay the client asked for (subscribe with `since`, unread): allowed on top of
        # the limit until the queue next empties, so a long catch-up is not mistaken for a slow reader.
        self._credit = 0
        self._wake = asyncio.Event()
        self.closing: tuple[int, str] | None = None
        self.closed = asyncio.Event()
        self.last_received = time.monotonic()
        self.last_sent = time.monotonic()
        self.last_ping = 0.0
        self.delivered = 0
        self._writer: asyncio.Task[None] | None = None
        # Called as on_gap(session, channel, last_delivered, missing_upto); set by Connections.
        self.on_gap: Callable[[Session, str, int, int], None] | None = None
        self._closer: asyncio.Task[None] | None = None
        # hub.deliver spans (a few per traced message) waiting for their frame to be sent:
        # (frames sent once it is out, span). Checked once per written batch, not per frame.
        self._watched: list[tuple[int, Span]] = []
        self._inflight = 0  # frames of the batch being written

    @property
    def app_id(self) -> str:
        return self.identity.app_id

    @property
    def user_id(self) -> str:
        return self.identity.user_id

    # -- subscriptions --------------------------------------------------------
    def begin_subscription(self, channel: str) -> ChannelSub:
        """Start buffering live messages of `channel` until `finish_subscription`."""
        sub = ChannelSub()
        self.subs[channel] = sub
        return sub

    def finish_subscription(self, channel: str, position: int, replay: list[str], head: str | None) -> None:
        """Send `head` (the subscribed frame), the replay, then buffered live messages past it."""
        sub = self.subs.get(channel)
        if sub is None:
            return
        buffered, sub.buffer = sub.buffer or [], None
        sub.last = position
        if head is not None:
            self.enqueue(head)
        self._credit += sum(map(len, replay))
        for frame in replay:
            self.enqueue(frame)
        for offset, frame in buffered:
            if offset > sub.last:
                sub.last = offset
                self.enqueue(frame)

    def offer(self, channel: str, offset: int, frame: str) -> None:
        sub = self.subs.get(channel)
        if sub is None:
            return
        if sub.buffer is not None:
            if len(sub.buffer) >= MAX_BUFFERED:
                self.close_soon(Close.SLOW_CONSUMER, "replay buffer full")
                return
            sub.buffer.append((offset, frame))
        elif offset > sub.last:
            # Duplicates (bus redelivery, replay overlap) are at or below `last`: dropped here.
            if offset > sub.last + 1 and self.on_gap is not None:
                # Live skipped ahead (a bus hiccup): hold live and fill the hole from history.
                sub.buffer = [(offset, frame)]
                self.on_gap(self, channel, sub.last, offset - 1)
                return
            sub.last = offset
            self.enqueue(frame)

    # -- traced deliveries ----------------------------------------------------
    def pending_frames(self) -> int:
        return len(self._queue)

    def watch(self, span: Span) -> None:
        """End `span` once the frame just queued (the last one) has been sent."""
        self._watched.append((self.delivered + self._inflight + len(self._queue), span))

    def _sent(self) -> None:
        still = []
        for marker, span in self._watched:
            if marker <= self.delivered:
                span.end()
            else:
                still.append((marker, span))
        self._watched = still

    def end_watched(self, reason: str | None = None) -> None:
        """The queue was dropped or the session ended: unsent frames' spans end (ERROR with a reason)."""
        watched, self._watched = self._watched, []
        for _, span in watched:
            if reason is not None:
                span.set_status(Status(StatusCode.ERROR, reason))
            span.end()

    # -- polling transports (no writer task: the request handler drains) ------
    def drain(self, limit: int) -> list[str]:
        out: list[str] = []
        while self._queue and len(out) < limit:
            frame = self._queue.popleft()
            self._queued -= len(frame)
            out.append(frame)
        if not self._queue:
            self._wake.clear()
            self._credit = 0
        self.delivered += len(out)
        if self._watched:
            self._sent()
        return out

    def drain_ready(self) -> bool:
        return bool(self._queue)

    async def wait_for_frames(self, timeout: float) -> bool:
        if self._queue:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._wake.wait()
        except TimeoutError:
            return False
        return bool(self._queue)

    # -- sending --------------------------------------------------------------
    def enqueue(self, frame: str) -> None:
        if self.closing is not None:
            return
        self._queue.append(frame)
        self._queued += len(frame)
        if self._queued > self._limit + self._credit:
            self.close_soon(Close.SLOW_CONSUMER, "send buffer full")
            return
        self._wake.set()

    def close_soon(self, code: int, reason: str) -> None:
        """Close now: drop anything queued (the client resumes with since) and stop the writer,
        even if it is blocked on a peer that does not read."""
        if self.closing is not None:
            return
        self.closing = (code, reason)
        self._queue.clear()
        self._queued = 0
        if self._watched:
            self.end_watched(f"connection closed ({code}): {reason}")
        self._wake.set()  # a long-poll waiting for frames returns at once (shutdown)
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        self._closer = asyncio.get_running_loop().create_task(self._close(code, reason))

    def start(self) -> None:
        self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name=f"writer-{self.id}")

    async def _write_loop(self) -> None:
        """Owns every data send on the transport; batches what queued up while it was sending."""
        try:
            while self.closing is None:
                await self._wake.wait()
                self._wake.clear()
                while self._queue and self.closing is None:
                    batch = list(self._queue)
                    self._queue.clear()
                    self._queued = self._credit = 0
                    self._inflight = len(batch)
                    await self.transport.send_frames(batch)
                    self._inflight = 0
                    self.delivered += len(batch)
                    self.last_sent = time.monotonic()
                    if self._watched:
                        self._sent()
        except (OSError, RuntimeError, ConnectionError) as exc:
            log.debug("session %s writer ended: %s", self.id, exc)
            self.closing = self.closing or (Close.NORMAL, "transport closed")
            self.end_watched(f"transport closed: {exc}")
            self.closed.set()

    async def _close(self, code: int, reason: str) -> None:
        try:
            if self._writer is not None:
                await asyncio.gather(self._writer, return_exceptions=True)
            async with asyncio.timeout(2):
                await self.transport.close(code, reason)
        except (TimeoutError, OSError, RuntimeError, ConnectionError):
            pass  # a peer that does not read cannot take a close frame either
        finally:
            self.closed.set()

    async def stop(self) -> None:
        """The connection ended from the other side: stop the writer quietly."""
        self.closing = self.closing or (Close.NORMAL, "disconnected")
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._watched:
            self.end_watched("disconnected before the frame was sent")
        self.closed.set()
