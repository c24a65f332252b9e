"""A replay onto a session, page by page, in the session's replay task.

Each page is read only when the session has room for it (Session.wait_for_room), so what a
replay holds is bounded by the connection, not by how far behind the client asked to start.
Live messages of the channel are buffered meanwhile and merged after the last page.
"""

from __future__ import annotations

from pushwire.errors import BackendUnavailable
from pushwire.messaging.history import ChannelState
from pushwire.realtime import protocol as p
from pushwire.realtime.hub import Hub
from pushwire.realtime.recovery import Recovery, next_page_size
from pushwire.realtime.session import ChannelSub, Session


class CatchUp:
    def __init__(self, recovery: Recovery, hub: Hub) -> None:
        self.recovery = recovery
        self.hub = hub

    async def run(
        self,
        session: Session,
        channel: str,
        sub: ChannelSub,
        epoch: str | None,
        after: int,
        state: ChannelState,
        *,
        announce: bool,
        lost_to: int | None = None,
    ) -> None:
        """Replay (after, state.top] of `channel` if it can be, then go live.

        `announce`: a subscribe asked, so the `subscribed` frame always comes first; otherwise
        (unread, a live gap) it comes only to say `recovered: false`, at `lost_to` (default the top).
        """
        if not await session.wait_for_room() or session.subs.get(channel) is not sub:
            return  # closing, or subscribed again / unsubscribed meanwhile: that one answers
        try:
            replay = await self.recovery.replay(session.app_id, channel, epoch, after, state)
        except BackendUnavailable:
            self._unavailable(session, channel, announce)
            return
        if session.subs.get(channel) is not sub:
            return
        if not replay.recovered:
            lost = state.top if lost_to is None else lost_to
            head = p.Subscribed(channel=channel, epoch=state.epoch, offset=lost, recovered=False, replayed=0)
            session.finish_subscription(channel, lost, [], p.encode(head))
            return
        if announce:
            head = p.Subscribed(
                channel=channel, epoch=state.epoch, offset=state.top, recovered=True, replayed=replay.count
            )
            session.enqueue(p.encode(head))
        sub.last = state.top  # acks up to the top are valid from the announcement on
        page, done = replay.messages, replay.after
        while True:
            session.enqueue_replay(page)
            done += len(page)
            if done >= state.top or session.closing is not None:
                break
            if not await session.wait_for_room() or session.subs.get(channel) is not sub:
                return
            try:
                page = await self.recovery.page(session.app_id, channel, done, state, next_page_size(page)) or []
            except BackendUnavailable:
                page = []
            if session.subs.get(channel) is not sub:
                return
            if not page:
                # Announced as recovered, so it must not go on past a hole: the client resumes with
                # `since` from what it got and hears then what can no longer be filled.
                session.close_soon(p.Close.RECONNECT, "replay interrupted; resume with since")
                return
        session.finish_subscription(channel, state.top, [], None)

    def _unavailable(self, session: Session, channel: str, announce: bool) -> None:
        if announce:
            self.hub.unsubscribe(session, channel)
            session.enqueue(p.encode(p.Error(code="unavailable", message="try again", channel=channel)))
        else:
            session.close_soon(p.Close.RECONNECT, "could not fill a delivery gap; resume with since")
