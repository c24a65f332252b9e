"""A session's send queue, and everything the session holds counted against its caps.

Counted in characters of the (JSON text) frames: the queue, the batch being written, and live
messages held while their channel replays (`buffered`, kept by the session). Two limits:
`limit` on what live traffic may leave queued (the slow-reader rule, 4008), and `cap` on the
total (MAX_HELD_BYTES, docs/client-protocol.md). Replay pages are not refused by `limit`: they
are paced instead, read only while `room` is set (queue + batch being written under REPLAY_ROOM).
"""

from __future__ import annotations

import asyncio
from collections import deque

# All a connection may hold: queue + batch being written + live held during replays.
MAX_HELD_BYTES = 8 * 1024 * 1024
# A replay page is read only when the queue and the batch being written are under this.
REPLAY_ROOM = 256 * 1024


# Shared by every queue that never held a frame: an idle connection allocates no deque.
# Only push and push_paced add frames, and they swap in a queue of its own first.
_NONE: deque[str] = deque(maxlen=0)


class SendQueue:
    __slots__ = ("_closed", "_room", "_wake", "buffered", "cap", "frames", "limit", "peak", "queued", "sending")

    def __init__(self, limit: int, cap: int = MAX_HELD_BYTES) -> None:
        self.frames: deque[str] = _NONE
        self.limit = limit
        self.cap = cap
        self.queued = 0
        self.sending = 0  # the batch being written
        self.buffered = 0  # live messages held while their channel replays
        self.peak = 0
        # Made when someone first waits (a poll, a replay): most connections never do.
        self._wake: asyncio.Event | None = None
        self._room: asyncio.Event | None = None
        self._closed = False

    @property
    def wake(self) -> asyncio.Event:
        """Set while frames are waiting (or the session is closing)."""
        if self._wake is None:
            self._wake = asyncio.Event()
            if self.frames or self._closed:
                self._wake.set()
        return self._wake

    @property
    def room(self) -> asyncio.Event:
        """Set while a replay may read its next page."""
        if self._room is None:
            self._room = asyncio.Event()
            if self._has_room():
                self._room.set()
        return self._room

    def _has_room(self) -> bool:
        return self._closed or self.queued + self.sending <= REPLAY_ROOM

    @property
    def total(self) -> int:
        return self.queued + self.sending + self.buffered

    def fits(self, size: int) -> bool:
        """Whether `size` more bytes stay under the cap (then counted in `peak`)."""
        total = self.total + size
        if total > self.cap:
            return False
        self.peak = max(self.peak, total)
        return True

    def push(self, frame: str) -> str | None:
        """Queue a live or control frame; else why not (the session closes with 4008)."""
        if self.queued + len(frame) > self.limit:
            return "send buffer full"
        if not self.fits(len(frame)):
            return "over the per-connection memory cap"
        if self.frames is _NONE:
            self.frames = deque()
        self.frames.append(frame)
        self.queued += len(frame)
        self._changed()
        return None

    def push_paced(self, frames: list[str]) -> str | None:
        """Queue frames the client asked for (a replay page), under the cap only."""
        size = sum(map(len, frames))
        if not self.fits(size):
            return "over the per-connection memory cap"
        if self.frames is _NONE:
            self.frames = deque()
        self.frames.extend(frames)
        self.queued += size
        self._changed()
        return None

    def take_all(self) -> list[str]:
        """The writer's next batch; its bytes count as `sending` until `sent`."""
        batch = list(self.frames)
        self.frames.clear()
        self.sending, self.queued = self.queued, 0
        return batch

    def sent(self) -> None:
        self.sending = 0
        self._changed()

    def drain(self, limit: int) -> list[str]:
        """Up to `limit` frames, for a poll (no writer)."""
        out: list[str] = []
        while self.frames and len(out) < limit:
            frame = self.frames.popleft()
            self.queued -= len(frame)
            out.append(frame)
        if not self.frames and self._wake is not None:
            self._wake.clear()
        self._changed()
        return out

    def clear(self) -> None:
        """The session is closing: drop everything and release whoever waits."""
        self.frames.clear()
        self.queued = self.sending = self.buffered = 0
        self._closed = True
        if self._room is not None:
            self._room.set()
        if self._wake is not None:
            self._wake.set()

    def release_room(self) -> None:
        """The session ended: a replay waiting for room wakes (and sees it closing)."""
        self._closed = True
        if self._room is not None:
            self._room.set()

    def _changed(self) -> None:
        if self.frames and self._wake is not None:
            self._wake.set()
        if self._room is not None:
            if self._has_room():
                self._room.set()
            else:
                self._room.clear()
