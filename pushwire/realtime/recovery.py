"""Catching a client up on a channel: from the hot history, else the database, or say it cannot.

A replay counts as recovered only when the epoch matches and every message after the client's
offset up to the channel's top is returned; anything else is `recovered: false` with nothing
replayed — never a partial, silent replay.
"""

from __future__ import annotations

import msgspec

from pushwire.errors import BackendUnavailable
from pushwire.messaging.envelope import ENCODER
from pushwire.messaging.history import ChannelState, History
from pushwire.messaging.hot_history import HotHistory

DB_PAGE = 1000
# Most messages one subscribe replays; further behind is `recovered: false` (read the history API).
# Bounds the memory a reconnect herd can pin: 10,000 × ~300 B ≈ 3 MB per client at worst.
MAX_REPLAY = 10_000


class Replay(msgspec.Struct, frozen=True):
    epoch: str
    top: int
    recovered: bool
    messages: list[str]
    source: str  # "none" | "cache" | "database"


class Recovery:
    def __init__(self, history: History, hot: HotHistory) -> None:
        self.history = history
        self.hot = hot

    async def state(self, app_id: str, channels: list[str]) -> dict[str, ChannelState]:
        return await self.history.states(app_id, channels)

    async def replay(self, app_id: str, channel: str, epoch: str | None, after: int, state: ChannelState) -> Replay:
        """Messages after `after` up to the channel's top; `epoch` None means "same epoch" (acks)."""
        if (epoch is not None and epoch != state.epoch) or after > state.top or after < 0:
            return Replay(epoch=state.epoch, top=state.top, recovered=False, messages=[], source="none")
        if after == state.top:
            return Replay(epoch=state.epoch, top=state.top, recovered=True, messages=[], source="none")
        if state.top - after > MAX_REPLAY:
            return Replay(epoch=state.epoch, top=state.top, recovered=False, messages=[], source="none")
        try:
            cached = await self.hot.range(app_id, channel, after, state.top)
        except BackendUnavailable:
            cached = None  # the cache is a fast path only
        if cached is not None:
            return Replay(
                epoch=state.epoch, top=state.top, recovered=True, messages=[c.decode() for c in cached], source="cache"
            )
        messages = await self._from_database(app_id, channel, after, state.top, state.epoch)
        if messages is None:
            return Replay(epoch=state.epoch, top=state.top, recovered=False, messages=[], source="database")
        return Replay(epoch=state.epoch, top=state.top, recovered=True, messages=messages, source="database")

    async def _from_database(self, app_id: str, channel: str, after: int, top: int, epoch: str) -> list[str] | None:
        out: list[str] = []
        cursor = after
        while cursor < top:
            page = await self.history.read(app_id, channel, cursor, min(DB_PAGE, top - cursor))
            if not page.messages or page.messages[0].offset != cursor + 1:
                return None  # trimmed by retention or missing: a gap we cannot fill
            for m in page.messages:
                if m.offset != cursor + 1:
                    return None
                if m.offset > top:
                    break
                out.append(ENCODER.encode(m).decode())
                cursor = m.offset
            if page.epoch != epoch:
                return None  # the channel was reset while we read
        return out
