"""Hub.tick with explicit clocks: a quiet WebSocket client is pinged after one heartbeat and
closed (4003) only after a ping it left unanswered; a tick that comes late (the loop stalled past
the ping window) pings first instead of closing a client that never got a ping."""

from __future__ import annotations

from pushwire.realtime.hub import Hub
from pushwire.realtime.protocol import Close
from pushwire.realtime.session import Session
from pushwire.realtime.tokens import ClientIdentity

HB = 10.0


class _Transport:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.frames: list[str] = []

    async def send_frames(self, frames: list[str]) -> None:
        self.frames.extend(frames)

    async def close(self, code: int, reason: str) -> None:
        return None


def _session(kind: str = "ws") -> Session:
    identity = ClientIdentity(
        app_id="1",
        tenant_id="t",
        user_id="u",
        channels=(),
        info=None,
        expires_at=0.0,
        max_connections=10,
        max_connections_per_user=10,
        allowed_origins=(),
    )
    return Session("s1", identity, _Transport(kind))


def _hub_with(session: Session) -> Hub:
    hub = Hub()
    hub.attach(session)
    return hub


async def test_quiet_client_is_pinged_then_closed_after_an_unanswered_ping() -> None:
    session = _session()
    hub = _hub_with(session)
    t0 = session.last_received
    assert hub.tick(HB, now=t0 + HB / 2) == [] and session.last_ping == 0.0
    assert hub.tick(HB, now=t0 + HB) == [] and session.last_ping == t0 + HB
    assert hub.tick(HB, now=t0 + 1.5 * HB) == []  # pinged less than a heartbeat ago
    assert hub.tick(HB, now=t0 + 2.1 * HB) == [session]
    assert session.closing is not None and session.closing[0] == Close.HEARTBEAT_TIMEOUT


async def test_a_late_tick_pings_before_it_closes() -> None:
    session = _session()
    hub = _hub_with(session)
    t0 = session.last_received
    # The first tick after connect comes 2.5 heartbeats late: the client never got a ping.
    assert hub.tick(HB, now=t0 + 2.5 * HB) == []
    assert session.closing is None and session.last_ping == t0 + 2.5 * HB
    assert hub.tick(HB, now=t0 + 2.7 * HB) == []  # its answer may still come
    session.last_received = t0 + 2.8 * HB  # the pong
    assert hub.tick(HB, now=t0 + 3.0 * HB) == [] and session.closing is None


async def test_a_late_tick_closes_once_its_ping_went_unanswered() -> None:
    session = _session()
    hub = _hub_with(session)
    t0 = session.last_received
    hub.tick(HB, now=t0 + 2.5 * HB)
    assert hub.tick(HB, now=t0 + 3.0 * HB) == [session]


async def test_a_polling_session_is_closed_after_two_heartbeats_without_pings() -> None:
    session = _session(kind="poll")
    hub = _hub_with(session)
    t0 = session.last_received
    assert hub.tick(HB, now=t0 + 1.5 * HB) == [] and session.last_ping == 0.0
    assert hub.tick(HB, now=t0 + 2.1 * HB) == [session]
