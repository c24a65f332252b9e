"""An in-process bus engine: partitioned, bounded logs with consumer groups, for single-node use.

Semantics follow the Kafka backend: a key always lands on one partition (crc32(key) % partitions),
so order holds per key; each consumer group keeps one committed position per partition; members
of one group in this process split the partitions between them, like a Kafka consumer group.
A group's position advances only after its handler returns, so a later member of the same group
resumes exactly after the last handled record (no re-delivery in-process).
"""

from __future__ import annotations

import asyncio
import logging
import re
import zlib
from collections.abc import Sequence

from pushwire.bus.base import BusRecord, OutgoingRecord, PartitionLag, RecordHandler
from pushwire.errors import BackendUnavailable

log = logging.getLogger(__name__)

MAX_BATCH = 500

TopicPartition = tuple[str, int]


class _PartitionLog:
    """Absolute offsets over a window of the newest `retention` records."""

    def __init__(self, retention: int) -> None:
        self._retention = retention
        self._items: list[BusRecord] = []
        self._base = 0  # offset of _items[0]
        self.end = 0  # offset the next record gets (the high watermark)

    @property
    def start(self) -> int:
        return max(self._base, self.end - self._retention)

    def append(self, record: BusRecord) -> None:
        self._items.append(record)
        self.end += 1
        # Trim in chunks so appends stay amortised O(1); `start` hides the slack meanwhile.
        slack = len(self._items) - self._retention
        if slack > max(16, self._retention // 4):
            del self._items[:slack]
            self._base += slack

    def read(self, offset: int, limit: int) -> list[BusRecord]:
        begin = max(offset, self.start) - self._base
        return self._items[begin : begin + limit]


class _Group:
    def __init__(self) -> None:
        self.positions: dict[TopicPartition, int] = {}
        self.members: list[MemorySubscription] = []  # join order decides partition ownership
        # Partitions whose handler call is in flight: a new owner waits, so no two members
        # ever handle one partition at once (matters while ownership moves on join/leave).
        self.busy: set[TopicPartition] = set()


class MemorySubscription:
    def __init__(self, bus: MemoryBus, pattern: re.Pattern[str], group: str, handler: RecordHandler) -> None:
        self._bus = bus
        self.pattern = pattern
        self.group = group
        self._handler = handler
        self._wake = asyncio.Event()
        self._stopping = False
        self._in_flight = False
        self._cursor = 0  # round-robin start, so a hot partition cannot starve the rest
        self._task: asyncio.Task[None] | None = None

    def _start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"memory-bus:{self.group}")

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        group = self._bus._groups[self.group]
        while not self._stopping:
            self._wake.clear()
            work = self._bus._next_batch(self)
            if work is None:
                await self._wake.wait()
                continue
            tp, records = work
            group.busy.add(tp)
            self._in_flight = True
            try:
                await self._handler(records)
            except Exception:
                log.exception("bus handler failed; stopping subscription (group %s)", self.group)
                self._stopping = True
            else:
                # Commit after success: a failed batch is redelivered to the next member.
                group.positions[tp] = records[-1].offset + 1
            finally:
                self._in_flight = False
                group.busy.discard(tp)
                self._bus._wake_group(self.group)
        self._bus._leave(self)

    async def stop(self) -> None:
        self._stopping = True
        self._bus._leave(self)
        task = self._task
        if task is None or task.done():
            return
        if task is asyncio.current_task():
            return  # called from our own handler: the loop ends once it returns
        if self._in_flight:
            # Let the handler finish (and its position commit); the loop then exits.
            await asyncio.shield(task)
        else:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def lag(self) -> list[PartitionLag]:
        if self._stopping:
            return []
        group = self._bus._groups[self.group]
        result = []
        for topic, partition in self._bus._owned(self):
            plog = self._bus._topics[topic][partition]
            position = max(group.positions.get((topic, partition), plog.start), plog.start)
            result.append(PartitionLag(topic, partition, position, plog.end))
        return result


# Records kept per partition. In-process consumers are at most a few batches behind, and a
# session fills a live gap from storage, so this bounds memory (a long-running node kept 100,000
# per partition: ~600 MiB for a busy tenant's 8 partitions of ~0.8 KiB records) rather than what
# clients can recover. With the trim slack, ≤ 1,250 records per partition (~8 MiB per tenant).
RETENTION = 1_000


class MemoryBus:
    def __init__(self, default_partitions: int = 4, retention: int = RETENTION) -> None:
        if default_partitions < 1 or retention < 1:
            raise ValueError("default_partitions and retention must be >= 1")
        self._default_partitions = default_partitions
        self._retention = retention
        self._topics: dict[str, list[_PartitionLog]] = {}
        self._groups: dict[str, _Group] = {}
        self._closed = False

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        for group in list(self._groups.values()):
            for member in list(group.members):
                await member.stop()

    async def ping(self) -> None:
        if self._closed:
            raise BackendUnavailable("bus", "memory bus is closed")

    async def ensure_topic(self, topic: str, partitions: int, replication: int = 1) -> None:
        if partitions < 1:
            raise ValueError("partitions must be >= 1")
        if topic not in self._topics:
            self._create_topic(topic, partitions)

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        await self.ping()
        touched: set[str] = set()
        for rec in records:
            logs = self._topics.get(rec.topic)
            if logs is None:
                logs = self._create_topic(rec.topic, self._default_partitions)
            partition = zlib.crc32(rec.key) % len(logs)
            plog = logs[partition]
            plog.append(BusRecord(rec.topic, partition, plog.end, rec.key, rec.value, rec.headers))
            touched.add(rec.topic)
        for group in self._groups.values():
            for member in group.members:
                if any(member.pattern.fullmatch(topic) for topic in touched):
                    member.wake()

    async def subscribe(
        self, pattern: str, group: str, handler: RecordHandler, *, from_beginning: bool = True
    ) -> MemorySubscription:
        await self.ping()
        sub = MemorySubscription(self, re.compile(pattern), group, handler)
        state = self._groups.setdefault(group, _Group())
        # A group with no position yet starts at the log start, or (like Kafka's "latest") at the
        # end as of now; existing group positions always win, as with committed Kafka offsets.
        for topic, logs in self._topics.items():
            if sub.pattern.fullmatch(topic):
                for partition, plog in enumerate(logs):
                    state.positions.setdefault((topic, partition), plog.start if from_beginning else plog.end)
        state.members.append(sub)
        self._wake_group(group)  # ownership changed for the other members
        sub._start()
        return sub

    # Engine internals, used by MemorySubscription.

    def _create_topic(self, topic: str, partitions: int) -> list[_PartitionLog]:
        logs = [_PartitionLog(self._retention) for _ in range(partitions)]
        self._topics[topic] = logs
        # Subscribers that match a new topic read it from its first record, whatever from_beginning.
        for state in self._groups.values():
            if any(m.pattern.fullmatch(topic) for m in state.members):
                for partition in range(partitions):
                    state.positions.setdefault((topic, partition), 0)
        return logs

    def _owned(self, sub: MemorySubscription) -> list[TopicPartition]:
        members = self._groups[sub.group].members
        owned = []
        for topic in sorted(self._topics):
            if not sub.pattern.fullmatch(topic):
                continue
            candidates = [m for m in members if m.pattern.fullmatch(topic)]
            seed = zlib.crc32(topic.encode())
            for partition in range(len(self._topics[topic])):
                if candidates[(seed + partition) % len(candidates)] is sub:
                    owned.append((topic, partition))
        return owned

    def _next_batch(self, sub: MemorySubscription) -> tuple[TopicPartition, list[BusRecord]] | None:
        state = self._groups[sub.group]
        owned = self._owned(sub)
        for i in range(len(owned)):
            tp = owned[(sub._cursor + i) % len(owned)]
            if tp in state.busy:
                continue
            plog = self._topics[tp[0]][tp[1]]
            records = plog.read(state.positions.get(tp, plog.start), MAX_BATCH)
            if records:
                sub._cursor = (sub._cursor + i + 1) % len(owned)
                return tp, records
        return None

    def _wake_group(self, group: str) -> None:
        for member in self._groups[group].members:
            member.wake()

    def _leave(self, sub: MemorySubscription) -> None:
        state = self._groups.get(sub.group)
        if state is not None and sub in state.members:
            state.members.remove(sub)
            self._wake_group(sub.group)  # the others take over its partitions
