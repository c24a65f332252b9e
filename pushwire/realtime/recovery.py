"""Catching a client up on a channel: from the hot history, else the database, or say it cannot.

A replay counts as recovered only when the epoch matches and every message after the client's
offset up to the channel's top can be returned; anything else is `recovered: false` with nothing
replayed — never a partial, silent replay.

A replay is read in pages, never whole: `replay` decides and returns the first page, `page`
reads each next one when the connection has room for it (realtime/catch_up.py). Retention
deletes a channel's oldest messages first, so a range whose first message is still stored is
whole. Should a later page be missing all the same (deleted while the replay ran), the caller
ends the connection (4500, resume with `since`) rather than go on past the hole.
"""

from __future__ import annotations

from collections import Counter

import msgspec

from pushwire.errors import BackendUnavailable
from pushwire.messaging.envelope import ENCODER
from pushwire.messaging.history import ChannelState, History
from pushwire.messaging.hot_history import HotHistory
from pushwire.messaging.state_reads import StateReads

# Most messages one subscribe replays; further behind is `recovered: false` (read the history API).
MAX_REPLAY = 10_000
# Pages: the first is small (messages may be up to the platform's payload maximum); the next ones
# are sized from what the last one weighed, to about REPLAY_PAGE_BYTES, at most REPLAY_PAGE_MAX.
FIRST_PAGE = 8
REPLAY_PAGE_MAX = 200
REPLAY_PAGE_BYTES = 64 * 1024


class Replay(msgspec.Struct, frozen=True):
    epoch: str
    top: int
    recovered: bool
    messages: list[str]  # the first page: messages after `after`, in order
    source: str  # "none" | "cache" | "database": where the first page came from
    after: int = 0  # the replay is of after < offset ≤ top

    @property
    def count(self) -> int:
        """Messages the whole replay holds (a recovered one)."""
        return self.top - self.after if self.recovered else 0


def next_page_size(page: list[str]) -> int:
    if not page:
        return FIRST_PAGE
    weight = max(1, sum(map(len, page)) // len(page))
    return max(1, min(REPLAY_PAGE_MAX, REPLAY_PAGE_BYTES // weight))


class Recovery:
    def __init__(self, history: History, hot: HotHistory) -> None:
        self.history = history
        self.hot = hot
        self.state_reads = StateReads(history)
        # Replays begun, by where their first page came from; pages read; the largest (messages).
        self.sources: Counter[str] = Counter()
        self.pages = 0
        self.largest_page = 0

    async def state(self, app_id: str, channels: list[str]) -> dict[str, ChannelState]:
        return await self.state_reads.states(app_id, channels)

    async def replay(
        self, app_id: str, channel: str, epoch: str | None, after: int, state: ChannelState, first: int = FIRST_PAGE
    ) -> Replay:
        """Whether (after, top] can be replayed, with its first page of at most `first` messages.
        `epoch` None means "same epoch" (acks, live gaps)."""
        if (epoch is not None and epoch != state.epoch) or after > state.top or after < 0:
            return Replay(epoch=state.epoch, top=state.top, recovered=False, messages=[], source="none", after=after)
        if after == state.top:
            return Replay(epoch=state.epoch, top=state.top, recovered=True, messages=[], source="none", after=after)
        if state.top - after > MAX_REPLAY:
            return Replay(epoch=state.epoch, top=state.top, recovered=False, messages=[], source="none", after=after)
        upto = min(state.top, after + max(1, first))
        source, messages = await self._read(app_id, channel, after, upto, state)
        self.sources[source] += 1
        return Replay(
            epoch=state.epoch,
            top=state.top,
            recovered=messages is not None,
            messages=messages or [],
            source=source,
            after=after,
        )

    async def page(self, app_id: str, channel: str, after: int, state: ChannelState, size: int) -> list[str] | None:
        """The next page of a replay: messages after `after`, at most `size`, up to the top of
        `state`; None when any of them is missing."""
        upto = min(state.top, after + max(1, size))
        return (await self._read(app_id, channel, after, upto, state))[1]

    async def _read(
        self, app_id: str, channel: str, after: int, upto: int, state: ChannelState
    ) -> tuple[str, list[str] | None]:
        self.pages += 1
        self.largest_page = max(self.largest_page, upto - after)
        try:
            cached = await self.hot.page(app_id, channel, after, upto, state.top)
        except BackendUnavailable:
            cached = None  # the cache is a fast path only
        if cached is not None:
            return "cache", [c.decode() for c in cached]
        return "database", await self._from_database(app_id, channel, after, upto, state.epoch)

    async def _from_database(self, app_id: str, channel: str, after: int, upto: int, epoch: str) -> list[str] | None:
        page = await self.history.read(app_id, channel, after, upto - after)
        if page.epoch != epoch:
            return None  # the channel was reset while we read
        out: list[str] = []
        for expected, m in enumerate(page.messages, start=after + 1):
            if m.offset != expected or m.offset > upto:
                return None  # trimmed by retention or missing: a gap we cannot fill
            out.append(ENCODER.encode(m).decode())
        return out if len(out) == upto - after else None
