"""One contract for every Bus: the in-process engine and Kafka (Tansu in CI) must behave the same.

The kafka case runs against the real broker in tests.services.KAFKA_URL (no skips). Each test
gets its own topic prefix `pwtest.<hex>` and group ids; its topics are deleted at teardown.
Topics are created before subscribing: pattern subscriptions only see new topics after a
metadata refresh. Delivery is at-least-once, so the kafka case deduplicates by (partition,
offset) wherever the memory engine promises exactly-once in-process.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from urllib.parse import urlsplit

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from pushwire.bus.base import BusRecord, OutgoingRecord
from pushwire.bus.kafka import KafkaBus
from pushwire.bus.memory import MemoryBus
from pushwire.errors import BackendUnavailable
from tests.services import KAFKA_URL, unique

AnyBus = MemoryBus | KafkaBus
WITHIN = 20.0


def _kafka_servers() -> list[str]:
    url = urlsplit(KAFKA_URL)
    assert url.scheme == "kafka" and url.netloc, KAFKA_URL
    return url.netloc.split(",")


async def _eventually(check: Callable[[], bool], within: float = WITHIN) -> float:
    """Poll until check() is true; returns the seconds it took, fails after `within`."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < within, f"condition not met within {within}s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


class Collector:
    """A handler that records every batch; `values` dedups by (topic, partition, offset)."""

    def __init__(self) -> None:
        self.batches: list[list[BusRecord]] = []
        self.seen: dict[tuple[str, int, int], BusRecord] = {}

    async def __call__(self, batch: Sequence[BusRecord]) -> None:
        self.batches.append(list(batch))
        for r in batch:
            self.seen[(r.topic, r.partition, r.offset)] = r

    @property
    def deliveries(self) -> int:
        return sum(len(b) for b in self.batches)

    def values(self) -> set[bytes]:
        return {r.value for r in self.seen.values()}


class Ctx:
    def __init__(self, kind: str, bus: AnyBus) -> None:
        self.kind = kind
        self.bus = bus
        self.base = unique("pwtest.")  # pwtest.<hex>: every topic of this test starts with it

    async def topic(self, suffix: str = "t", partitions: int = 4) -> str:
        name = f"{self.base}.{suffix}"
        await self.bus.ensure_topic(name, partitions)
        return name

    @staticmethod
    def group() -> str:
        return unique("pwtest-g-")


def _records(topic: str, n: int, keys: int = 5, start: int = 0) -> list[OutgoingRecord]:
    return [
        OutgoingRecord(topic, f"k{i % keys}".encode(), f"k{i % keys}:{i}".encode()) for i in range(start, start + n)
    ]


def _kafka_bus() -> KafkaBus:
    # A short session timeout: Tansu makes every JoinGroup wait about half of it.
    return KafkaBus(_kafka_servers(), session_timeout_ms=3000, metadata_max_age_ms=1000)


@pytest.fixture(params=["memory", "kafka"])
async def ctx(request: pytest.FixtureRequest) -> AsyncIterator[Ctx]:
    async with _context(request.param) as context:
        yield context


@pytest.fixture
async def kafka_ctx() -> AsyncIterator[Ctx]:
    async with _context("kafka") as context:
        yield context


@contextlib.asynccontextmanager
async def _context(kind: str) -> AsyncIterator[Ctx]:
    # The suite publishes up to 3,000 records before subscribing, as Kafka's retention allows; the
    # memory bus keeps 1,000 per partition by default (test_memory_retention_drops_oldest).
    bus: AnyBus = MemoryBus(retention=10_000) if kind == "memory" else _kafka_bus()
    await bus.start()
    context = Ctx(kind, bus)
    try:
        yield context
    finally:
        await bus.close()
        if kind == "kafka":
            admin = AIOKafkaAdminClient(bootstrap_servers=_kafka_servers())
            await admin.start()
            try:
                mine = [t for t in await admin.list_topics() if t.startswith(context.base)]
                if mine:
                    await admin.delete_topics(mine)
            finally:
                await admin.close()


def _assert_batches_well_formed(collector: Collector) -> None:
    for batch in collector.batches:
        assert batch, "handler called with an empty batch"
        assert len({(r.topic, r.partition) for r in batch}) == 1, "a batch spans partitions"
        offsets = [r.offset for r in batch]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


async def test_ping(ctx: Ctx) -> None:
    await ctx.bus.ping()


async def test_publish_then_consume_round_trips_key_value_headers(ctx: Ctx) -> None:
    topic = await ctx.topic()
    sent = [
        OutgoingRecord(topic, b"user-1", b"\x00hello", (("trace", b"abc"), ("kind", b"\xff"))),
        OutgoingRecord(topic, b"user-2", b"", ()),
        OutgoingRecord(topic, b"user-1", b"second", (("trace", b"def"),)),
    ]
    await ctx.bus.publish(sent)
    got = Collector()
    sub = await ctx.bus.subscribe(re.escape(topic), ctx.group(), got)
    await _eventually(lambda: len(got.seen) == 3)
    await sub.stop()

    _assert_batches_well_formed(got)
    received = sorted(got.seen.values(), key=lambda r: (r.key, r.offset))
    assert [(r.topic, r.key, r.value, r.headers) for r in received] == [
        (topic, b"user-1", b"\x00hello", (("trace", b"abc"), ("kind", b"\xff"))),
        (topic, b"user-1", b"second", (("trace", b"def"),)),
        (topic, b"user-2", b"", ()),
    ]
    first, second = received[0], received[1]
    assert first.partition == second.partition and first.offset < second.offset


async def test_order_holds_per_key(ctx: Ctx) -> None:
    topic = await ctx.topic()
    await ctx.bus.publish(_records(topic, 200, keys=7))
    got = Collector()
    sub = await ctx.bus.subscribe(re.escape(topic), ctx.group(), got)
    await _eventually(lambda: len(got.seen) == 200)
    await sub.stop()

    _assert_batches_well_formed(got)
    by_key: dict[bytes, list[BusRecord]] = {}
    for r in sorted(got.seen.values(), key=lambda r: r.offset):
        by_key.setdefault(r.key, []).append(r)
    assert len(by_key) == 7
    for key, recs in by_key.items():
        assert len({r.partition for r in recs}) == 1, f"{key!r} spread over partitions"
        seq = [int(r.value.split(b":")[1]) for r in recs]
        assert seq == sorted(seq) and len(seq) == len(range(int(key[1:]), 200, 7))


async def test_a_publish_larger_than_a_produce_batch_arrives_whole_and_in_order(ctx: Ctx) -> None:
    # ~1.5 MiB for one key and more for others: several produce batches per partition on Kafka.
    topic = await ctx.topic(partitions=2)
    pad = b"x" * 1500
    sent = [OutgoingRecord(topic, f"k{i % 3}".encode(), b"%d:" % i + pad) for i in range(3000)]
    await ctx.bus.publish(sent[:1000])
    await ctx.bus.publish(sent[1000:])
    got = Collector()
    sub = await ctx.bus.subscribe(re.escape(topic), ctx.group(), got)
    await _eventually(lambda: len(got.seen) == 3000, within=30)
    await sub.stop()
    _assert_batches_well_formed(got)
    for k in range(3):
        mine = sorted((r for r in got.seen.values() if r.key == f"k{k}".encode()), key=lambda r: r.offset)
        assert [int(r.value.split(b":")[0]) for r in mine] == list(range(k, 3000, 3))
        assert len({r.partition for r in mine}) == 1


async def test_kafka_partitions_keys_as_the_java_client_does(kafka_ctx: Ctx) -> None:
    """Producers of other versions (or languages) must put a channel on the same partition."""
    ctx = kafka_ctx
    topic = await ctx.topic(partitions=4)
    keys = [f"room.{i}".encode() for i in range(40)]
    await ctx.bus.publish([OutgoingRecord(topic, key, b"v") for key in keys])
    got = Collector()
    sub = await ctx.bus.subscribe(re.escape(topic), ctx.group(), got)
    await _eventually(lambda: len(got.seen) == 40)
    await sub.stop()
    placed = {r.key: r.partition for r in got.seen.values()}
    assert placed == {key: DefaultPartitioner()(key, [0, 1, 2, 3], [0, 1, 2, 3]) for key in keys}
    assert len(set(placed.values())) > 1


async def test_two_groups_each_get_everything(ctx: Ctx) -> None:
    topic = await ctx.topic()
    await ctx.bus.publish(_records(topic, 50))
    one, two = Collector(), Collector()
    subs = [
        await ctx.bus.subscribe(re.escape(topic), ctx.group(), one),
        await ctx.bus.subscribe(re.escape(topic), ctx.group(), two),
    ]
    await _eventually(lambda: len(one.seen) == 50 and len(two.seen) == 50)
    for sub in subs:
        await sub.stop()
    assert one.values() == two.values() == {r.value for r in _records(topic, 50)}


async def test_two_members_of_one_group_share_the_work(ctx: Ctx) -> None:
    topic = await ctx.topic(partitions=4)
    group = ctx.group()
    one, two = Collector(), Collector()
    first = await ctx.bus.subscribe(re.escape(topic), group, one)
    second = await ctx.bus.subscribe(re.escape(topic), group, two)

    def split() -> bool:
        owned_first = {p.partition for p in first.lag()}
        owned_second = {p.partition for p in second.lag()}
        return (
            bool(owned_first)
            and bool(owned_second)
            and owned_first | owned_second == {0, 1, 2, 3}
            and not owned_first & owned_second
        )

    # Both members hold partitions once the group has settled (Kafka: after the rebalance).
    await _eventually(split)

    await ctx.bus.publish(_records(topic, 100, keys=20))
    await _eventually(lambda: len(one.values() | two.values()) == 100)
    assert one.seen and two.seen, "one member did all the work"
    if ctx.kind == "memory":
        assert one.deliveries + two.deliveries == 100  # in-process: exactly once

    # The survivor takes over the partitions of a member that stops.
    await first.stop()
    await ctx.bus.publish(_records(topic, 40, keys=20, start=100))
    later = {r.value for r in _records(topic, 40, keys=20, start=100)}
    await _eventually(lambda: later <= two.values())
    await second.stop()


async def test_pattern_matches_only_intended_topics(ctx: Ctx) -> None:
    a = await ctx.topic("a")
    b = await ctx.topic("b")
    ab = await ctx.topic("ab")  # a prefix match of "a" would take it: the pattern is a full match
    other = await ctx.topic("x", partitions=1)
    other_prefix = ctx.base + "x"  # shares the prefix, not the dot
    await ctx.bus.ensure_topic(other_prefix, 1)
    for topic in (a, b, ab, other, other_prefix):
        await ctx.bus.publish([OutgoingRecord(topic, b"k", topic.encode())])

    got = Collector()
    sub = await ctx.bus.subscribe(re.escape(ctx.base) + r"\.(a|b)", ctx.group(), got)
    await _eventually(lambda: len(got.seen) == 2)
    await asyncio.sleep(0.5)  # give a wrong match the chance to show up
    assert got.values() == {a.encode(), b.encode()}
    await sub.stop()


async def test_topic_created_after_subscribe_is_picked_up(ctx: Ctx) -> None:
    await ctx.topic("first")
    got = Collector()
    sub = await ctx.bus.subscribe(re.escape(ctx.base) + r"\..*", ctx.group(), got)
    late = await ctx.topic("late")
    await ctx.bus.publish([OutgoingRecord(late, b"k", b"late-1")])
    # Kafka needs a metadata refresh and a rebalance; a record published meanwhile is not lost.
    await _eventually(lambda: got.values() == {b"late-1"})
    await sub.stop()


async def test_lag_counts_down_to_zero(ctx: Ctx) -> None:
    topic = await ctx.topic()
    await ctx.bus.publish(_records(topic, 120, keys=9))
    gate = asyncio.Event()
    entered = asyncio.Event()
    got = Collector()

    async def gated(batch: Sequence[BusRecord]) -> None:
        entered.set()
        await gate.wait()
        await got(batch)

    sub = await ctx.bus.subscribe(re.escape(topic), ctx.group(), gated)
    if ctx.kind == "memory":  # nothing has run yet: everything is lag
        assert sum(p.lag for p in sub.lag()) == 120
    await asyncio.wait_for(entered.wait(), WITHIN)
    assert sum(p.lag for p in sub.lag()) > 0, "lag must show unhandled records"

    gate.set()
    await _eventually(lambda: len(got.seen) == 120)
    await _eventually(lambda: sum(p.highwater for p in sub.lag()) == 120)
    lag = sub.lag()
    assert sum(p.lag for p in lag) == 0
    assert all(p.position == p.highwater for p in lag)
    # Each partition's high watermark is one past the last offset we were given.
    last = {}
    for r in got.seen.values():
        last[r.partition] = max(last.get(r.partition, -1), r.offset)
    assert {p.partition: p.highwater for p in lag if p.highwater} == {p: o + 1 for p, o in last.items()}
    await sub.stop()
    assert sub.lag() == []


async def test_resubscribe_resumes_after_committed_position(ctx: Ctx) -> None:
    topic = await ctx.topic()
    group = ctx.group()
    await ctx.bus.publish(_records(topic, 30))
    first = Collector()
    sub = await ctx.bus.subscribe(re.escape(topic), group, first)
    await _eventually(lambda: len(first.seen) == 30)
    await sub.stop()

    await ctx.bus.publish(_records(topic, 20, start=30))
    second = Collector()
    sub = await ctx.bus.subscribe(re.escape(topic), group, second)
    new = {r.value for r in _records(topic, 20, start=30)}
    await _eventually(lambda: new <= second.values())
    await asyncio.sleep(0.3)
    await sub.stop()
    if ctx.kind == "memory":
        assert second.values() == new and second.deliveries == 20
    else:  # at-least-once: earlier records may come again, but nothing is missing
        assert new <= second.values() <= new | first.values()


async def test_stop_waits_for_in_flight_handler(ctx: Ctx) -> None:
    topic = await ctx.topic()
    await ctx.bus.publish(_records(topic, 10, keys=1))
    entered = asyncio.Event()
    finished: list[int] = []

    async def slow(batch: Sequence[BusRecord]) -> None:
        entered.set()
        await asyncio.sleep(0.3)
        finished.append(len(batch))

    sub = await ctx.bus.subscribe(re.escape(topic), ctx.group(), slow)
    await asyncio.wait_for(entered.wait(), WITHIN)
    await sub.stop()
    assert finished, "stop() returned before the in-flight handler call finished"
    calls = len(finished)
    await ctx.bus.publish(_records(topic, 10, keys=1, start=10))
    await asyncio.sleep(0.5)
    assert len(finished) == calls, "handler called after stop()"


async def test_failing_handler_stops_subscription_and_records_come_again(ctx: Ctx) -> None:
    topic = await ctx.topic(partitions=1)
    group = ctx.group()
    await ctx.bus.publish(_records(topic, 5, keys=1))
    calls: list[list[BusRecord]] = []

    async def failing(batch: Sequence[BusRecord]) -> None:
        calls.append(list(batch))
        raise RuntimeError("handler bug")

    sub = await ctx.bus.subscribe(re.escape(topic), group, failing)
    await _eventually(lambda: len(calls) == 1)
    await ctx.bus.publish(_records(topic, 5, keys=1, start=5))
    await asyncio.sleep(0.5)
    assert len(calls) == 1, "a failed subscription kept consuming"
    assert sub.lag() == []
    await sub.stop()  # stopping a dead subscription is harmless

    # Nothing was committed for the failed batch: the group gets it again.
    again = Collector()
    sub = await ctx.bus.subscribe(re.escape(topic), group, again)
    await _eventually(lambda: len(again.seen) == 10)
    assert min(r.offset for r in again.seen.values()) == calls[0][0].offset
    await sub.stop()


async def test_publish_after_close_is_unavailable(ctx: Ctx) -> None:
    topic = await ctx.topic()
    await ctx.bus.close()
    with pytest.raises(BackendUnavailable):
        await ctx.bus.publish(_records(topic, 1))


async def test_unreachable_kafka_fails_fast() -> None:
    bus = KafkaBus(["127.0.0.1:1"])
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        await bus.start()
    assert time.monotonic() - started < 15
    assert info.value.backend == "bus"
    with pytest.raises(BackendUnavailable):
        await bus.publish(_records("pwtest.never", 1))
    await bus.close()


async def test_memory_retention_drops_oldest() -> None:
    bus = MemoryBus(default_partitions=1, retention=10)
    await bus.publish(_records("pwtest.retained", 25, keys=1))
    got = Collector()
    sub = await bus.subscribe(r"pwtest\.retained", "g", got)
    assert [(p.position, p.highwater) for p in sub.lag()] == [(15, 25)]
    await _eventually(lambda: len(got.seen) == 10)
    assert sorted(r.offset for r in got.seen.values()) == list(range(15, 25))
    assert sorted(r.value for r in got.seen.values()) == sorted(
        r.value for r in _records("pwtest.retained", 25, keys=1)[15:]
    )
    # A long run keeps absolute offsets while the window slides.
    await bus.publish(_records("pwtest.retained", 5000, keys=1, start=25))
    await _eventually(lambda: len(got.seen) == 20)
    assert max(r.offset for r in got.seen.values()) == 5024
    await bus.close()


async def test_memory_subscribe_from_latest_skips_existing() -> None:
    bus = MemoryBus()
    await bus.publish(_records("pwtest.latest", 10))
    got = Collector()
    sub = await bus.subscribe(r"pwtest\.latest", "g", got, from_beginning=False)
    await bus.publish(_records("pwtest.latest", 3, start=10))
    await _eventually(lambda: len(got.seen) == 3)
    await asyncio.sleep(0.05)
    assert got.values() == {r.value for r in _records("pwtest.latest", 3, start=10)}
    await sub.stop()
    await bus.close()
