"""The transactional outbox relay: committed outbox rows → hot history → bus, in order.

Rows are sharded by channel hash. A relay works only the shards whose registry lock it holds,
so exactly one relay publishes a given channel at a time; if its holder dies the lock's lease
expires and another instance takes the shard over. Rows are deleted only after the bus has
acknowledged them, so a crash re-publishes (at-least-once; routers deduplicate by offset).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import sqlalchemy as sa
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context

from pushwire.bus.base import Bus, OutgoingRecord
from pushwire.errors import BackendUnavailable
from pushwire.messaging.envelope import ENCODER, ENVELOPE_DECODER, BusEnvelope
from pushwire.messaging.hot_history import HotHistory
from pushwire.messaging.publish import OUTBOX_SHARDS
from pushwire.registry.base import Lock, Registry
from pushwire.storage.database import Database
from pushwire.storage.models import App, OutboxEntry
from pushwire.tracing.context import context_from, format_traceparent, is_sampled
from pushwire.tracing.delivery import message_attributes

log = logging.getLogger(__name__)

BATCH = 500
IDLE_POLL = 0.05  # only shard holders poll; each empty poll costs ~2 ms of CPU (20 % of a core at 10 ms)
LOCK_TTL = 5
APP_LIMITS_TTL = 30.0
# While the bus fails, a failed attempt is traced at most this often (retries come every 0.5 s).
FAILED_TRACE_EVERY = 5.0


def topic_for(prefix: str, tenant_id: str) -> str:
    return f"{prefix}.{tenant_id}"


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        hot: HotHistory,
        registry: Registry,
        wakeup: asyncio.Event,
        topic_prefix: str,
        tracer: Tracer | None = None,
        instance_id: str = "",
    ) -> None:
        self.db = db
        self.bus = bus
        self.hot = hot
        self.registry = registry
        self.wakeup = wakeup
        self.prefix = topic_prefix
        self.tracer = tracer
        self.instance_id = instance_id
        self._trace_after = 0.0
        self._locks: dict[int, Lock] = {}
        self._hot_sizes: dict[str, tuple[int, float]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.published = 0
        self.backlog = 0

    @property
    def shards(self) -> list[int]:
        return sorted(self._locks)

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self, drain_seconds: float = 5.0) -> None:
        """Publish what is pending (within `drain_seconds`), then free the shards."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            # The flag ends the loop even if a library swallowed the cancellation (seen on 3.11).
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                async with asyncio.timeout(drain_seconds):
                    await asyncio.shield(self._task)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(drain_seconds):
                while await self.pump_once():
                    pass
        for lock in self._locks.values():
            with contextlib.suppress(Exception):
                await lock.release()
        self._locks.clear()

    async def _run(self) -> None:
        next_lock_check = 0.0
        while not self._stopping:
            try:
                now = time.monotonic()
                if now >= next_lock_check:
                    await self._manage_locks()
                    next_lock_check = now + LOCK_TTL / 3
                moved = await self.pump_once() if self._locks else 0
                if moved == 0:
                    self.wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(IDLE_POLL):
                            await self.wakeup.wait()
            except asyncio.CancelledError:
                raise
            except BackendUnavailable as exc:
                log.warning("outbox relay waiting: %s", exc)
                await asyncio.sleep(0.5)
            except Exception:
                log.exception("outbox relay error")
                await asyncio.sleep(0.5)

    async def _manage_locks(self) -> None:
        for shard, lock in list(self._locks.items()):
            if not await lock.refresh():
                log.warning("outbox shard %d lock lost", shard)
                del self._locks[shard]
        for shard in range(OUTBOX_SHARDS):
            if shard not in self._locks:
                lock = self.registry.lock(f"outbox-shard-{shard}", LOCK_TTL)
                if await lock.acquire(timeout=0):
                    self._locks[shard] = lock

    async def pump_once(self) -> int:
        """Move one batch of this relay's shards to the bus; returns how many rows moved."""
        shards = self.shards
        if not shards:
            return 0
        started_ns = time.time_ns()
        async with self.db.session() as s:
            rows = (
                await s.scalars(
                    sa.select(OutboxEntry).where(OutboxEntry.shard.in_(shards)).order_by(OutboxEntry.id).limit(BATCH)
                )
            ).all()
        if not rows:
            self.backlog = 0
            return 0
        envelopes = [ENVELOPE_DECODER.decode(row.payload) for row in rows]
        hot_batches: dict[tuple[str, str], list[tuple[int, bytes]]] = {}
        for row, envelope in zip(rows, envelopes, strict=True):
            m = envelope.message
            hot_batches.setdefault((row.app_id, row.channel), []).append((m.offset, ENCODER.encode(m)))
        try:
            for (app_id, channel), items in hot_batches.items():
                await self.hot.append(app_id, channel, items, await self._hot_size(app_id))
        except BackendUnavailable as exc:
            # Hot history is a fast path; recovery falls back to the database.
            log.warning("hot history not written: %s", exc)
        spans: list[tuple[Span, Span]] = []
        records = [
            self._record(row, envelope, started_ns, spans) for row, envelope in zip(rows, envelopes, strict=True)
        ]
        produced = False
        try:
            await self.bus.publish(records)
            produced = True
            for _, produce in spans:
                produce.end()
            async with self.db.session() as s:
                await s.execute(sa.delete(OutboxEntry).where(OutboxEntry.id.in_([r.id for r in rows])))
                await s.commit()
        except BaseException as exc:
            if spans:
                self._trace_after = time.monotonic() + FAILED_TRACE_EVERY
            for relay, produce in spans:
                for span in (relay,) if produced else (produce, relay):
                    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:300]))
                    span.end()
            raise
        for relay, _ in spans:
            relay.end()
        self.published += len(rows)
        return len(rows)

    def _record(
        self, row: OutboxEntry, envelope: BusEnvelope, started_ns: int, spans: list[tuple[Span, Span]]
    ) -> OutgoingRecord:
        """The bus record of a row; a sampled message gets outbox.relay and kafka.produce spans, and
        the record carries kafka.produce's context (not the push span's) in its traceparent header."""
        m = envelope.message
        headers = [("message_id", m.id.encode())]
        traceparent = envelope.traceparent
        topic = topic_for(self.prefix, row.tenant_id)
        if self.tracer is not None and is_sampled(traceparent) and time.monotonic() >= self._trace_after:
            attrs = message_attributes(envelope, self.instance_id)
            relay = self.tracer.start_span(
                "outbox.relay",
                context=context_from(traceparent),
                start_time=started_ns,
                attributes={**attrs, "outbox.shard": row.shard},
            )
            produce = self.tracer.start_span(
                "kafka.produce",
                context=set_span_in_context(relay),
                kind=SpanKind.PRODUCER,
                attributes={**attrs, "messaging.system": "kafka", "messaging.destination.name": topic},
            )
            spans.append((relay, produce))
            traceparent = format_traceparent(produce.get_span_context())
        if traceparent:
            headers.append(("traceparent", traceparent.encode()))
        return OutgoingRecord(topic=topic, key=row.channel.encode(), value=row.payload, headers=tuple(headers))

    async def _hot_size(self, app_id: str) -> int:
        cached = self._hot_sizes.get(app_id)
        if cached is not None and time.monotonic() - cached[1] < APP_LIMITS_TTL:
            return cached[0]
        async with self.db.session() as s:
            size = await s.scalar(sa.select(App.hot_history_size).where(App.id == app_id))
        value = int(size or 1000)
        self._hot_sizes[app_id] = (value, time.monotonic())
        return value
