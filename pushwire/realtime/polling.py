"""One poll of the long-poll and SSE transports: catch up from the cursor, else wait for live.

A temporary session subscribes (buffering) before positions are read, replays each channel
from the cursor, and collects frames; the answer carries a new cursor whose positions count
only the messages actually returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import msgspec

from pushwire import ids
from pushwire.errors import ApiError
from pushwire.names import BROADCAST, is_channel, personal_channel
from pushwire.realtime import protocol as p
from pushwire.realtime.connections import Connections
from pushwire.realtime.session import Session
from pushwire.realtime.tokens import ClientIdentity
from pushwire.realtime.transports.cursor import Cursor, CursorCodec, CursorError

MAX_MESSAGES = 1000
MAX_ROOMS = 100
POLL_QUEUE_BYTES = 64 * 1024 * 1024


class _Position(msgspec.Struct):
    channel: str
    offset: int
    epoch: str


_POSITION = msgspec.json.Decoder(_Position)


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


class Poller:
    def __init__(self, connections: Connections, codec: CursorCodec) -> None:
        self.c = connections
        self.codec = codec

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
        session = Session(cursor.session if cursor else ids.session_id(), identity, _Collector(kind), POLL_QUEUE_BYTES)
        session.on_gap = self.c.fill_gap
        hub = self.c.hub
        hub.attach(session)
        try:
            for ch in channels:
                hub.subscribe(session, ch)
            await self.c.presence.upsert(session.id, identity.app_id, identity.user_id, self.c.instance_id, kind)
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
            for ch in channels:
                state = states[ch]
                if cursor is not None and ch in cursor.positions:
                    epoch, after = cursor.positions[ch]
                elif cursor is None and ch == personal:  # unread compensation on the first poll
                    epoch, after = state.epoch, await self.c.acks.get(identity.app_id, identity.user_id, personal)
                else:
                    base[ch] = (state.epoch, state.top)
                    subscribed.append(
                        p.Subscribed(channel=ch, epoch=state.epoch, offset=state.top, recovered=False, replayed=0)
                    )
                    session.finish_subscription(ch, state.top, [], None)
                    continue
                replay = await self.c.recovery.replay(identity.app_id, ch, epoch, after, state)
                if replay.recovered:
                    base[ch] = (state.epoch, after)
                    session.finish_subscription(ch, state.top, replay.messages, None)
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
        return self._result(session.id, identity, base, frames, welcome, subscribed)

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
        for frame in frames:
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
