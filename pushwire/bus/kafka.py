"""The Kafka bus (aiokafka), tested against Tansu as well as Kafka-protocol brokers in general.

One producer and one admin client per bus; one AIOKafkaConsumer per subscription. Offsets are
committed only after the handler returns, so delivery is at-least-once.

Broker quirks this copes with (Tansu, memory-only):
- idempotent producers are refused, so idempotence is a constructor setting (default off);
- `end_offsets()` is wrong, so lag comes from the consumer's own highwater and position;
- the first group generation is numbered 0, which aiokafka takes for "never joined" and then
  skips LeaveGroup on stop; the next member of the group waits a whole session timeout.
  `_leave_group_at_generation_zero` fixes that;
- JoinGroup waits about session_timeout/2 for other members, so the session timeout sets the
  start-up delay of every subscription (hence the `session_timeout_ms` setting).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, TopicAlreadyExistsError, for_code
from aiokafka.partitioner import murmur2
from aiokafka.protocol.metadata import MetadataRequest

from pushwire.bus.base import BusRecord, OutgoingRecord, PartitionLag, RecordHandler
from pushwire.errors import BackendUnavailable

log = logging.getLogger(__name__)

MAX_BATCH = 500
# Short enough that a dead broker surfaces as BackendUnavailable in seconds, not minutes.
REQUEST_TIMEOUT_MS = 5_000
# One produce batch per partition per publish call holds a relay batch whole (500 rows of ~0.5 KiB):
# a second batch for the same partition would wait for the first to be drained.
MAX_BATCH_BYTES = 512 * 1024
MAX_HASHES = 65_536  # cached key hashes (channel names); cleared when full
START_TIMEOUT_S = 8.0
CLOSE_TIMEOUT_S = 10.0
_TRANSIENT = (KafkaError, OSError, TimeoutError)


def _leave_group_at_generation_zero(consumer: AIOKafkaConsumer) -> None:
    """Make stop() send LeaveGroup even when the broker numbered our generation 0 (Tansu)."""
    coordinator = consumer._coordinator
    if coordinator is None:
        return
    original = coordinator._maybe_leave_group

    async def leave() -> None:
        if coordinator.generation == 0:
            coordinator.generation = 1  # LeaveGroup carries no generation; this only unblocks it
        await original()

    coordinator._maybe_leave_group = leave


def _fetch_position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The consumer's fetch position without awaiting (aiokafka's position() is a coroutine)."""
    try:
        state = consumer._subscription.subscription.assignment.state_value(tp)
    except AttributeError:
        return None
    if state is None or not state.has_valid_position:
        return None
    return int(state.position)


class KafkaSubscription:
    def __init__(self, consumer: AIOKafkaConsumer, group: str, handler: RecordHandler) -> None:
        self._consumer = consumer
        self._group = group
        self._handler = handler
        self._stopping = False
        self._in_flight = False
        # Next offset to hand to the handler, per partition we own: more exact than the
        # consumer's position, which moves past records fetched but not yet handled.
        self._positions: dict[TopicPartition, int] = {}
        self._task: asyncio.Task[None] | None = None

    def _start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"kafka-bus:{self._group}")

    def _forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._positions.pop(tp, None)

    async def _run(self) -> None:
        consumer = self._consumer
        try:
            while not self._stopping:
                try:
                    batches = await consumer.getmany(timeout_ms=500, max_records=MAX_BATCH)
                except KafkaError as exc:
                    # The consumer retries broker trouble itself; back off and keep going.
                    log.warning("bus consumer error (group %s): %r", self._group, exc)
                    await asyncio.sleep(1.0)
                    continue
                for tp, messages in batches.items():
                    self._positions[tp] = messages[0].offset
                self._in_flight = True
                try:
                    for tp, messages in batches.items():
                        if self._stopping:
                            break  # stop() waits for one handler call, not the whole fetch
                        if tp not in consumer.assignment():
                            continue  # revoked meanwhile: its new owner gets these records
                        if not await self._handle(tp, messages):
                            return
                finally:
                    self._in_flight = False
        except Exception:
            log.exception("bus consumer crashed; stopping subscription (group %s)", self._group)
        finally:
            self._stopping = True
            try:
                await asyncio.wait_for(consumer.stop(), CLOSE_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - shutting down; nothing left to do
                log.warning("bus consumer stop failed (group %s): %r", self._group, exc)

    async def _handle(self, tp: TopicPartition, messages: list[ConsumerRecord]) -> bool:
        records = [
            BusRecord(
                topic=m.topic,
                partition=m.partition,
                offset=m.offset,
                key=m.key or b"",
                value=m.value or b"",
                headers=tuple((k, v or b"") for k, v in m.headers),
            )
            for m in messages
        ]
        try:
            await self._handler(records)
        except Exception:
            log.exception("bus handler failed; stopping subscription (group %s)", self._group)
            return False
        next_offset = records[-1].offset + 1
        self._positions[tp] = next_offset
        try:
            await self._consumer.commit({tp: next_offset})
        except KafkaError as exc:
            # Usually a rebalance: the records are handled, the next owner may see them again.
            log.warning("bus commit failed (group %s, %s): %r", self._group, tp, exc)
        return True

    async def stop(self) -> None:
        self._stopping = True
        task = self._task
        if task is None or task.done() or task is asyncio.current_task():
            return  # from inside the handler: the loop ends when it returns
        if not self._in_flight:
            task.cancel()  # parked in getmany: nothing handled is lost
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)

    def lag(self) -> list[PartitionLag]:
        if self._stopping:
            return []
        result = []
        for tp in sorted(self._consumer.assignment()):
            highwater = self._consumer.highwater(tp)
            position = self._positions.get(tp)
            if position is None:
                position = _fetch_position(self._consumer, tp)
            if highwater is None or position is None:
                continue  # no fetch answered for it yet
            result.append(PartitionLag(tp.topic, tp.partition, position, highwater))
        return result


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka ships no types
    def __init__(self, subscription: KafkaSubscription) -> None:
        self._subscription = subscription

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._subscription._forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        pass


class KafkaBus:
    def __init__(
        self,
        bootstrap_servers: list[str],
        *,
        client_id: str = "pushwire",
        acks: str | int = "all",
        idempotent: bool = False,
        linger_ms: int = 2,
        default_partitions: int = 4,
        replication: int = 1,
        metadata_max_age_ms: int = 2000,
        session_timeout_ms: int = 10_000,
        fetch_wait_ms: int = 10,
    ) -> None:
        if not bootstrap_servers:
            raise ValueError("bootstrap_servers must not be empty")
        self._servers = list(bootstrap_servers)
        self._client_id = client_id
        self._acks = acks
        self._idempotent = idempotent
        self._linger_ms = linger_ms
        self._default_partitions = default_partitions
        self._replication = replication
        self._metadata_max_age_ms = metadata_max_age_ms
        self._session_timeout_ms = session_timeout_ms
        self._fetch_wait_ms = fetch_wait_ms
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._ensured: set[str] = set()
        self._subscriptions: list[KafkaSubscription] = []
        # murmur2 is pure Python in aiokafka (~5 µs a key); channels repeat, so their hashes are kept.
        self._hashes: dict[bytes, int] = {}

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            bootstrap_servers=self._servers,
            client_id=self._client_id,
            acks=self._acks,
            enable_idempotence=self._idempotent,
            linger_ms=self._linger_ms,
            max_batch_size=MAX_BATCH_BYTES,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            metadata_max_age_ms=self._metadata_max_age_ms,
        )
        admin = AIOKafkaAdminClient(
            bootstrap_servers=self._servers,
            client_id=self._client_id + "-admin",
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            metadata_max_age_ms=self._metadata_max_age_ms,
        )
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await producer.start()
                await admin.start()
        except BaseException as exc:
            await _quietly(producer.stop(), admin.close())
            if isinstance(exc, _TRANSIENT):
                # Also how a broker refusing idempotent producers (Tansu) shows up: UnknownError.
                detail = f"start failed against {self._servers}: {exc!r}"
                raise BackendUnavailable("bus", detail) from exc
            raise
        self._producer, self._admin = producer, admin

    async def close(self) -> None:
        for sub in list(self._subscriptions):
            await sub.stop()
        self._subscriptions.clear()
        producer, admin = self._producer, self._admin
        self._producer = self._admin = None
        if producer is not None and admin is not None:
            await _quietly(producer.stop(), admin.close())

    def _started(self) -> tuple[AIOKafkaProducer, AIOKafkaAdminClient]:
        if self._producer is None or self._admin is None:
            raise BackendUnavailable("bus", "kafka bus is not started")
        return self._producer, self._admin

    async def ping(self) -> None:
        producer, _ = self._started()
        client = producer.client
        try:
            node = client.get_random_node()
            if node is None:
                raise BackendUnavailable("bus", "no broker known")
            # An empty topic list asks for brokers only: the cheapest metadata request.
            request = MetadataRequest([])
            await asyncio.wait_for(client.send(node, request), REQUEST_TIMEOUT_MS / 1000)
        except _TRANSIENT as exc:
            raise BackendUnavailable("bus", f"ping failed: {exc!r}") from exc

    async def ensure_topic(self, topic: str, partitions: int, replication: int = 1) -> None:
        _, admin = self._started()
        try:
            response = await admin.create_topics([NewTopic(topic, partitions, replication)])
        except _TRANSIENT as exc:
            raise BackendUnavailable("bus", f"create topic {topic}: {exc!r}") from exc
        for _name, code, message in (tuple(e)[:3] for e in response.topic_errors):
            if code not in (0, TopicAlreadyExistsError.errno):
                raise for_code(code)(f"create topic {topic}: {message}")
        self._ensured.add(topic)

    async def publish(self, records: Sequence[OutgoingRecord]) -> None:
        producer, _ = self._started()
        # Create topics ourselves: broker auto-creation may be off, or use other partition counts.
        for topic in {r.topic for r in records} - self._ensured:
            await self.ensure_topic(topic, self._default_partitions, self._replication)
        futures: list[asyncio.Future[Any]] = []
        try:
            # One batch per partition, built here: per record, aiokafka's send() costs a partitioner
            # call, a size estimate and a future, more than the record itself.
            groups: dict[tuple[str, int], list[OutgoingRecord]] = {}
            partitions: dict[str, list[int]] = {}
            for r in records:
                if r.topic not in partitions:
                    partitions[r.topic] = sorted(await producer.partitions_for(r.topic))
                groups.setdefault((r.topic, self._partition(r.key, partitions[r.topic])), []).append(r)
            for (topic, partition), group in groups.items():
                batch = producer.create_batch()
                for r in group:
                    if batch.append(key=r.key, value=r.value, timestamp=None, headers=list(r.headers)) is None:
                        futures.append(await producer.send_batch(batch, topic, partition=partition))
                        batch = producer.create_batch()
                        if batch.append(key=r.key, value=r.value, timestamp=None, headers=list(r.headers)) is None:
                            raise MessageSizeTooLargeError(f"a record of {len(r.value)} bytes fits no batch")
                futures.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.gather(*futures)
        except _TRANSIENT as exc:
            for fut in futures:  # consume the other outcomes: no "exception never retrieved"
                fut.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise BackendUnavailable("bus", f"publish failed: {exc!r}") from exc

    def _partition(self, key: bytes, partitions: list[int]) -> int:
        """aiokafka's DefaultPartitioner (Java's murmur2), so every producer maps a channel alike."""
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= MAX_HASHES:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return partitions[hashed % len(partitions)]

    async def subscribe(
        self, pattern: str, group: str, handler: RecordHandler, *, from_beginning: bool = True
    ) -> KafkaSubscription:
        self._started()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._servers,
            client_id=self._client_id,
            group_id=group,
            auto_offset_reset="earliest" if from_beginning else "latest",
            enable_auto_commit=False,
            # How long the broker may hold an empty fetch. Tansu answers it only when this runs
            # out (not when records arrive): at aiokafka's 500 ms, idle delivery took ~140 ms.
            fetch_max_wait_ms=self._fetch_wait_ms,
            metadata_max_age_ms=self._metadata_max_age_ms,
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=max(100, self._session_timeout_ms // 3),
            request_timeout_ms=max(REQUEST_TIMEOUT_MS, self._session_timeout_ms + 5_000),
        )
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                await consumer.start()
        except BaseException as exc:
            await _quietly(consumer.stop())
            if isinstance(exc, _TRANSIENT):
                raise BackendUnavailable("bus", f"consumer start: {exc!r}") from exc
            raise
        _leave_group_at_generation_zero(consumer)
        sub = KafkaSubscription(consumer, group, handler)
        # aiokafka matches patterns with re.match (a prefix match); the contract says full match.
        consumer.subscribe(pattern=rf"(?:{pattern})\Z", listener=_Listener(sub))
        sub._start()
        self._subscriptions = [s for s in self._subscriptions if not s._stopping] + [sub]
        return sub


async def _quietly(*closers: object) -> None:
    """Run cleanup coroutines, bounded in time, ignoring their errors: we are already failing."""
    for closer in closers:
        try:
            await asyncio.wait_for(closer, CLOSE_TIMEOUT_S)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001
            log.debug("bus cleanup failed: %r", exc)
