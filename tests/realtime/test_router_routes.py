"""The router reads a record's route header (app, epoch, offset; the channel is the key) before
its value: records no local connection follows are never decoded, redeliveries are dropped, the
message's own bytes are the frame, and records without the header are still routed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import msgspec
import pytest

from pushwire.bus.base import BusRecord
from pushwire.bus.memory import MemoryBus
from pushwire.messaging.envelope import (
    ENCODER,
    ROUTE,
    BusEnvelope,
    ClientMessage,
    OutboxEnvelope,
    parse_route,
    route_header,
)
from pushwire.realtime.hub import Hub
from pushwire.realtime.router import Router
from tests.live import LiveServer


class RecordingHub(Hub):
    """A real hub whose deliveries are recorded instead of written to sessions."""

    def __init__(self, followed: set[tuple[str, str]]) -> None:
        super().__init__()
        self.followed = followed
        self.delivered: list[tuple[str, str, int, str]] = []

    def has_subscribers(self, app_id: str, channel: str) -> bool:
        return (app_id, channel) in self.followed

    def deliver(self, app_id: str, channel: str, offset: int, frame: str, trace: object = None) -> int:
        self.delivered.append((app_id, channel, offset, frame))
        return 1


def message(channel: str, offset: int) -> ClientMessage:
    return ClientMessage(channel, offset, "e1", f"m{offset}", "ev", msgspec.Raw(b'{"n":1}'), "2026-12-07T00:00:00.000Z")


def routed(app_id: str, m: ClientMessage, value: bytes | None = None) -> BusRecord:
    """A record as the outbox relay produces it."""
    body = ENCODER.encode(OutboxEnvelope("t1", app_id, msgspec.Raw(ENCODER.encode(m))))
    headers = (route_header(app_id, m.epoch, m.offset), ("message_id", m.id.encode()))
    return BusRecord("pushwire.t1", 0, m.offset, m.channel.encode(), body if value is None else value, headers)


def router_for(hub: Hub) -> Router:
    return Router(MemoryBus(), hub, "pushwire", "g")


def test_route_header_round_trip_and_refusals() -> None:
    name, value = route_header("104233", "a1b2c3d4", 42)
    assert name == ROUTE and parse_route(value) == ("104233", "a1b2c3d4", 42)
    for bad in (b"", b"104233 a1b2", b"104233 a1b2 x", b"1 2 3 4", b"104233 a1b2 -1"):
        assert parse_route(bad) is None, bad


async def test_a_record_nobody_follows_is_not_decoded(caplog: pytest.LogCaptureFixture) -> None:
    hub = RecordingHub(followed=set())
    router = router_for(hub)
    # Its value is not even JSON: reading it would log "undecodable record".
    with caplog.at_level(logging.ERROR):
        await router.handle([routed("a1", message("room.x", 1), value=b"\xff not json")])
    assert hub.delivered == [] and router.received == 1
    assert "undecodable" not in caplog.text


async def test_a_followed_record_is_framed_from_its_own_bytes_and_redeliveries_dropped() -> None:
    hub = RecordingHub(followed={("a1", "room.x")})
    router = router_for(hub)
    records = [routed("a1", message("room.x", o)) for o in (1, 2)]
    await router.handle([*records, records[1]])  # the bus delivers offset 2 twice
    assert [(a, c, o) for a, c, o, _ in hub.delivered] == [("a1", "room.x", 1), ("a1", "room.x", 2)]
    assert hub.delivered[0][3] == ENCODER.encode(message("room.x", 1)).decode()
    assert router.duplicates == 1


async def test_an_undecodable_followed_record_is_dropped_with_an_error(caplog: pytest.LogCaptureFixture) -> None:
    hub = RecordingHub(followed={("a1", "room.x")})
    router = router_for(hub)
    with caplog.at_level(logging.ERROR):
        await router.handle([routed("a1", message("room.x", 1), value=b"{broken"), routed("a1", message("room.x", 2))])
    assert "undecodable record" in caplog.text
    assert [o for _, _, o, _ in hub.delivered] == [2]  # the next record still goes


async def test_records_without_a_route_header_are_decoded_and_routed() -> None:
    hub = RecordingHub(followed={("a1", "room.x")})
    router = router_for(hub)
    m = message("room.x", 7)
    old: Sequence[BusRecord] = [
        BusRecord("pushwire.t1", 0, 7, b"room.x", ENCODER.encode(BusEnvelope("t1", "a1", m)), (("message_id", b"m7"),))
    ]
    await router.handle(old)
    await router.handle(old)
    assert hub.delivered == [("a1", "room.x", 7, ENCODER.encode(m).decode())]


async def test_the_relay_puts_the_route_header_first(live: LiveServer) -> None:
    seen: list[BusRecord] = []

    async def keep(records: Sequence[BusRecord]) -> None:
        seen.extend(records)

    rt = live.runtime
    prefix = rt.settings.kafka_topic_prefix
    sub = await rt.backends.bus.subscribe(rf"{prefix}\..+", f"routes-{live.app_id}", keep, from_beginning=True)
    try:
        async with live.pusher() as pw:
            await pw.push(channels=["room.routes"], event="e", data=1)
        async with asyncio.timeout(20):
            while not any(r.key == b"room.routes" for r in seen):
                await asyncio.sleep(0.05)
    finally:
        await sub.stop()
    [record] = [r for r in seen if r.key == b"room.routes"]
    name, value = record.headers[0]
    route = parse_route(value)
    assert name == ROUTE and route is not None
    app_id, epoch, offset = route
    body = msgspec.json.decode(record.value)
    assert (app_id, epoch, offset) == (live.app_id, body["message"]["epoch"], body["message"]["offset"])
