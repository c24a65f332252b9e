"""The bus contract: keyed records on topics with partitions, consumed by a handler.

Order holds per key (records with one key land on one partition). Delivery is at-least-once:
consumers deduplicate by (channel, offset), never by trusting the bus.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import msgspec


class OutgoingRecord(msgspec.Struct, frozen=True):
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


class BusRecord(msgspec.Struct, frozen=True):
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


class PartitionLag(msgspec.Struct, frozen=True):
    topic: str
    partition: int
    position: int
    highwater: int

    @property
    def lag(self) -> int:
        return max(0, self.highwater - self.position)


# Called with records of one partition, in offset order. Raising stops that consumer.
RecordHandler = Callable[[Sequence[BusRecord]], Awaitable[None]]


class Subscription(Protocol):
    async def stop(self) -> None:
        """Stop consuming; in-flight handler calls finish first."""

    def lag(self) -> list[PartitionLag]:
        """Per-partition position and high watermark as this consumer last saw them."""


class Bus(Protocol):
    async def start(self) -> None:
        """Connect; raise BackendUnavailable if the broker does not answer."""

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def ensure_topic(self, topic: str, partitions: int, replication: int = 1) -> None:
        """Create the topic if missing (idempotent)."""

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        """Return only when every record is acknowledged by the broker; raise BackendUnavailable otherwise."""

    async def subscribe(
        self, pattern: str, group: str, handler: RecordHandler, *, from_beginning: bool = True
    ) -> Subscription:
        """Consume every topic whose full name matches the regex `pattern`, as consumer group `group`.

        Topics created after the call are picked up too (within the metadata refresh interval).
        """
