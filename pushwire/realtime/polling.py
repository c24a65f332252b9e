"""One poll of the long-poll and SSE transports: catch up from the cursor, else wait for live.

A temporary session subscribes (buffering) before positions are read, replays each channel
from the cursor, and collects frames; the answer carries a new cursor whose positions count
only the messages actually returned. A poll replays at most MAX_MESSAGES messages or
POLL_REPLAY_BYTES, read in pages; the client polls again at once for the rest.

Each poll session holds a connection slot (checked against the app's and the user's limits
like a WebSocket's; a continuing session keeps its own) while a request is open and for the
presence grace after (presence/store.py, open_polls.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec

from pushwire import ids
from pushwire.errors import ApiError
from pushwire.messaging.history import ChannelState
from pushwire.names import BROADCAST, is_channel, personal_channel
from pushwire.presence import store
from pushwire.realtime import protocol as p
from pushwire.realtime.connections import Connections, LimitReached
from pushwire.realtime.open_polls import OpenPolls
from pushwire.realtime.recovery import next_page_size
from pushwire.realtime.session import MAX_HELD_BYTES, Session
from pushwire.realtime.tokens import ClientIdentity
from pushwire.realtime.transports.cursor import Cursor, CursorCodec, CursorError

MAX_MESSAGES = 1000
MAX_ROOMS = p.MAX_SUBSCRIPTIONS
# Replayed bytes one answer carries at most (at least one message).
POLL_REPLAY_BYTES = 1024 * 1024
POLL_QUEUE_BYTES = MAX_HELD_BYTES


class _Position(msgspec.Struct):
    channel: str
    offset: int
    epoch: str


_POSITION = msgspec.json.Decoder(_Position)
_READ = msgspec.json.Decoder(p.Read)


class _Collector:
    """Frames stay in the session queue; the poll handler drains them."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def send_frames(self, frames: list[str]) -> None:  # pragma: no cover - no writer runs
        raise RuntimeError("polling sessions have no writer")

    async def close(self, code: int, reason: str) -> None:
        return None


class PollResult(msgspec.Struct):
    messages: list[str]
    cursors: list[str]  # the cursor after each message (SSE event ids)
    cursor: str
    welcome: p.Welcome | None
    subscribed: list[p.Subscribed]
    # Read notices (another connection of the user acked): the highest offset per channel.
    reads: list[p.Read] = msgspec.field(default_factory=list)


class _Budget:
    """What is left of one answer's replay allowance."""

    def __init__(self) -> None:
        self.messages = MAX_MESSAGES
        self.bytes = POLL_REPLAY_BYTES

    @property
    def left(self) -> bool:
        return self.messages > 0 and self.bytes > 0

    def take(self, page: list[str]) -> None:
        self.messages -= len(page)
        self.bytes -= sum(map(len, page))


class Poller:
    def __init__(self, connections: Connections, codec: CursorCodec) -> None:
        self.c = connections
        self.codec = codec
        self.open_polls = OpenPolls(connections.presence)

    async def _claim(self, identity: ClientIdentity, session_id: str, continuing: bool, kind: str) -> None:
        """The poll session's connection slot: kept by a continuing session whose route is current,
        else taken like a new connection's (429 `connection_limit` when there is none to spare)."""
        presence = self.c.presence
        if continuing and await presence.refresh_poll(session_id, identity.app_id, self.c.instance_id):
            return
        try:
            await self.c.check_limits(identity, session_id)
        except LimitReached as exc:
            retry = str(max(1, round(store.POLL_GRACE)))
            raise ApiError(429, "connection_limit", str(exc), headers={"Retry-After": retry}) from None
        await presence.upsert(session_id, identity.app_id, identity.user_id, self.c.instance_id, kind)
        self.c.slots.forget_others(identity.app_id)  # a route its in-memory counts do not hold

    def rooms(self, identity: ClientIdentity, requested: list[str]) -> list[str]:
        if len(requested) > MAX_ROOMS:
            raise ApiError(
                422, "invalid_request", f"at most {MAX_ROOMS} channels", [{"field": "channel", "message": "too many"}]
            )
        out = []
        for ch in requested:
            if not is_channel(ch):
                raise ApiError(
                    422, "invalid_request", "invalid channel name", [{"field": "channel", "message": ch[:170]}]
                )
            if not identity.may_subscribe(ch):
                raise ApiError(403, "forbidden", f"the token does not allow channel {ch!r}")
            out.append(ch)
        return out

    async def poll(
        self,
        identity: ClientIdentity,
        rooms: list[str],
        cursor_text: str | None,
        timeout: float,
        kind: str,
        hangup: Callable[[], Awaitable[None]] | None = None,
    ) -> PollResult:
        """`hangup` returns when the client has gone: the wait ends then instead of at `timeout`."""
        cursor = None
        if cursor_text:
            try:
                cursor = self.codec.decode(cursor_text, identity.app_id, identity.user_id)
            except CursorError as exc:
                raise ApiError(400, "invalid_cursor", str(exc)) from None
        personal = personal_channel(identity.user_id)
        channels = list(dict.fromkeys([personal, BROADCAST, *rooms]))
        session_id = cursor.session if cursor else ids.session_id()
        await self._claim(identity, session_id, cursor is not None, kind)
        session = Session(session_id, identity, _Collector(kind), POLL_QUEUE_BYTES, POLL_QUEUE_BYTES)
        session.on_gap = self.c.fill_gap
        hub = self.c.hub
        self.open_polls.opened(session_id)
        hub.attach(session)
        try:
            for ch in channels:
                hub.subscribe(session, ch)
            states = await self.c.recovery.state(identity.app_id, channels)
            base: dict[str, tuple[str, int]] = {}
            subscribed: list[p.Subscribed] = []
            welcome = None
            if cursor is None:
                welcome = p.Welcome(
                    user=identity.user_id,
                    app=identity.app_id,
                    session=session.id,
                    instance=self.c.instance_id,
                    heartbeat=self.c.heartbeat,
                    channels={ch: p.ChannelPosition(epoch=st.epoch, offset=st.top) for ch, st in states.items()},
                )
            budget = _Budget()
            for ch in channels:
                state = states[ch]
                if cursor is not None and ch in cursor.positions:
                    epoch, after = cursor.positions[ch]
                elif cursor is None and ch == personal:  # unread compensation on the first poll
                    epoch, after = state.epoch, await self.c.acks.get(identity.app_id, identity.user_id, personal)
                else:
                    epoch, after = state.epoch, state.top  # a new room starts at the top
                    subscribed.append(
                        p.Subscribed(channel=ch, epoch=state.epoch, offset=state.top, recovered=False, replayed=0)
                    )
                if await self._catch_up(session, ch, epoch, after, state, budget):
                    base[ch] = (state.epoch, after)
                else:
                    base[ch] = (state.epoch, state.top)
                    subscribed.append(
                        p.Subscribed(channel=ch, epoch=state.epoch, offset=state.top, recovered=False, replayed=0)
                    )
                    session.finish_subscription(ch, state.top, [], None)
            if not session.drain_ready() and not subscribed and welcome is None:
                if await _wait_or_hangup(session.wait_for_frames(timeout), hangup):
                    await asyncio.sleep(0.005)  # let a burst arrive together
            frames = session.drain(MAX_MESSAGES)
        finally:
            hub.detach(session)
            self.open_polls.closed(session_id)
        return self._result(session.id, identity, base, frames, welcome, subscribed)

    async def _catch_up(
        self, session: Session, ch: str, epoch: str, after: int, state: ChannelState, budget: _Budget
    ) -> bool:
        """Queue (after, top] of `ch` as far as the budget goes, then its live messages if it got
        to the top. False when the range cannot be replayed (the caller answers recovered: false)."""
        if after == state.top and epoch == state.epoch:
            session.finish_subscription(ch, state.top, [], None)
            return True
        if not budget.left:
            self.c.hub.unsubscribe(session, ch)  # no room in this answer: the next poll continues
            return epoch == state.epoch and 0 <= after <= state.top
        replay = await self.c.recovery.replay(
            session.app_id, ch, epoch, after, state, first=min(budget.messages, next_page_size([]))
        )
        if not replay.recovered:
            return False
        page, collected, done = replay.messages, [], after
        while True:
            collected.extend(page)
            budget.take(page)
            done += len(page)
            if done >= state.top or not budget.left or not page:
                break
            size = min(budget.messages, next_page_size(page))
            page = await self.c.recovery.page(session.app_id, ch, done, state, size) or []
        if done >= state.top:
            session.finish_subscription(ch, state.top, collected, None)
        else:
            # Cut short (budget, or a page missing): only what was read, no live past the cut.
            # Positions count only returned messages, so the next poll resumes exactly here.
            self.c.hub.unsubscribe(session, ch)
            session.enqueue_replay(collected)
        return True

    def _result(
        self,
        session_id: str,
        identity: ClientIdentity,
        positions: dict[str, tuple[str, int]],
        frames: list[str],
        welcome: p.Welcome | None,
        subscribed: list[p.Subscribed],
    ) -> PollResult:
        messages, cursors = [], []
        reads: dict[str, int] = {}
        for frame in frames:
            if frame.startswith('{"type":"read"'):
                read = _READ.decode(frame)
                reads[read.channel] = max(read.offset, reads.get(read.channel, 0))
                continue
            if not frame.startswith('{"type":"message"'):
                continue
            pos = _POSITION.decode(frame)
            positions[pos.channel] = (pos.epoch, pos.offset)
            messages.append(frame)
            cursors.append(self._encode(session_id, identity, positions))
        return PollResult(
            messages=messages,
            cursors=cursors,
            cursor=cursors[-1] if cursors else self._encode(session_id, identity, positions),
            welcome=welcome,
            subscribed=subscribed,
            reads=[p.Read(channel=ch, offset=offset) for ch, offset in reads.items()],
        )

    def _encode(self, session_id: str, identity: ClientIdentity, positions: dict[str, tuple[str, int]]) -> str:
        return self.codec.encode(
            Cursor(app=identity.app_id, user=identity.user_id, session=session_id, positions=dict(positions))
        )


async def _wait_or_hangup(wait: Awaitable[object], hangup: Callable[[], Awaitable[None]] | None) -> bool:
    """False when the client hung up first (nothing will read the answer; its cursor is unchanged)."""
    if hangup is None:
        await wait
        return True
    waiter, gone = asyncio.ensure_future(wait), asyncio.ensure_future(hangup())
    try:
        done, _ = await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiter, gone):
            task.cancel()
        await asyncio.gather(waiter, gone, return_exceptions=True)
    return gone not in done
