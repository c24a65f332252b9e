"""Member events through an outage: queued in order, retried, bounded (the publish is a function
that fails on purpose; the live path is in test_socket_protocol.py)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from pushwire.errors import BackendUnavailable
from pushwire.messaging.publish import PublishRequest, PublishResult
from pushwire.pusher import announcer as announcer_module
from pushwire.pusher.announcer import Announcer


def _req(event: str) -> PublishRequest:
    return PublishRequest(channels=("presence-r",), event=event, data=msgspec.Raw(b'"{}"'))


class Outage:
    """Refuses as unavailable while `down`, refuses `poisoned` events otherwise, records the rest."""

    def __init__(self) -> None:
        self.delays: dict[str, float] = {}  # per event: how long the database takes to answer
        self.down = False
        self.poisoned: set[str] = set()
        self.published: list[str] = []

    async def __call__(self, tenant_id: str, app_id: str, request: PublishRequest) -> PublishResult:
        await asyncio.sleep(self.delays.get(request.event, 0))
        if self.down:
            raise BackendUnavailable("database", "outage")
        if request.event in self.poisoned:
            raise ValueError("a row the database refuses")
        self.published.append(request.event)
        return PublishResult(id=request.event, deliveries=[])


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(announcer_module, "RETRY_FIRST", 0.01)
    monkeypatch.setattr(announcer_module, "RETRY_MAX", 0.02)


async def _drained(announcer: Announcer) -> None:
    async with asyncio.timeout(5):
        while announcer.pending:
            await asyncio.sleep(0.01)


async def test_events_wait_out_an_outage_and_keep_their_order() -> None:
    publish = Outage()
    announcer = Announcer(publish)
    await announcer.announce("t", "1", _req("a"))
    assert publish.published == ["a"] and not announcer.pending  # no outage: published at once
    publish.down = True
    for event in ("b", "c"):
        await announcer.announce("t", "1", _req(event))
    await asyncio.sleep(0.1)  # several failed retries
    assert [r.event for _, _, r in announcer.pending] == ["b", "c"]
    publish.down = False
    await announcer.announce("t", "1", _req("d"))  # behind the waiting ones, not ahead of them
    await _drained(announcer)
    assert publish.published == ["a", "b", "c", "d"]
    assert announcer.retried == 3 and announcer.dropped == 0
    await announcer.stop()


async def test_concurrent_events_of_a_channel_keep_their_order_when_an_outage_begins() -> None:
    """The earlier event's publish takes longest and fails last: later ones must not get ahead."""
    publish = Outage()
    publish.delays = {"a": 0.06, "b": 0.04, "c": 0.02}
    publish.down = True
    announcer = Announcer(publish)
    await asyncio.gather(*(announcer.announce("t", "1", _req(event)) for event in ("a", "b", "c")))
    publish.down = False
    publish.delays = {}
    await announcer.announce("t", "1", _req("d"))
    await _drained(announcer)
    assert publish.published == ["a", "b", "c", "d"]
    await announcer.stop()
    await announcer.announce("t", "1", _req("e"))  # after stop: counted, never published
    assert publish.published == ["a", "b", "c", "d"] and announcer.dropped == 1


async def test_the_queue_is_bounded_and_a_refused_row_does_not_block_the_rest() -> None:
    publish = Outage()
    announcer = Announcer(publish, max_pending=2)
    publish.down = True
    for event in ("a", "b", "c"):
        await announcer.announce("t", "1", _req(event))
    assert [r.event for _, _, r in announcer.pending] == ["b", "c"] and announcer.dropped == 1
    publish.poisoned = {"b"}
    publish.down = False
    await _drained(announcer)
    assert publish.published == ["c"] and announcer.dropped == 2


async def test_stop_counts_what_was_left() -> None:
    publish = Outage()
    publish.down = True
    announcer = Announcer(publish)
    await announcer.announce("t", "1", _req("a"))
    await announcer.stop()
    assert not announcer.pending and announcer.dropped == 1
