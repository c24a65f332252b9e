"""The transactional outbox relay: committed outbox rows → hot history → bus, in order.

Rows are sharded by channel hash. A relay works only the shards whose registry lock it holds,
so exactly one relay publishes a given channel at a time; if its holder dies the lock's lease
expires and another instance takes the shard over. Rows are deleted only after the bus has
acknowledged them, so a crash re-publishes (at-least-once; routers deduplicate by offset).

The Publisher of this instance hands each transaction's committed rows to `hand_off`, and the
relay sends them without reading them back: one produce, one hot-history pipeline and one
DELETE per batch. A handed-off row goes out directly only when this relay itself sent the
channel's previous offset (or it is the channel's first); otherwise an older row may still wait
in the outbox (another instance's, a failed batch's), so the row is left to a poll of its shard,
which sends the shard's rows in id order, and per channel id order is offset order. Polling
stays as the safety net: rows other instances commit, what a crash left, a database that cannot
return inserted ids (MySQL).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context

from pushwire.bus.base import Bus, OutgoingRecord
from pushwire.errors import BackendUnavailable
from pushwire.messaging.envelope import (
    ENVELOPE_DECODER,
    MESSAGE_HEAD_DECODER,
    OUTBOX_ENVELOPE_DECODER,
    Committed,
    route_header,
)
from pushwire.messaging.hot_history import HotHistory
from pushwire.messaging.publish import OUTBOX_SHARDS
from pushwire.registry.base import Lock, Registry
from pushwire.storage.database import Database
from pushwire.storage.dialect import table_of
from pushwire.storage.models import App, OutboxEntry
from pushwire.tracing.context import context_from, format_traceparent, is_sampled
from pushwire.tracing.delivery import message_attributes

log = logging.getLogger(__name__)

BATCH = 500
# Shards are polled this often while other instances are registered (their commits reach this
# relay only by polling), and SAFETY_POLL apart when this instance is alone.
IDLE_POLL = 0.05
SAFETY_POLL = 1.0
LOCK_TTL = 5
APP_LIMITS_TTL = 30.0
# While the bus fails, a failed attempt is traced at most this often (retries come every 0.5 s).
FAILED_TRACE_EVERY = 5.0
# Handed-off rows waiting beyond this (a stalled relay) are dropped: their shards are polled instead.
MAX_HANDED = 20_000
# Channels whose last sent offset a shard remembers; past it the shard forgets them (and polls).
MAX_CHANNELS_PER_SHARD = 50_000

_OUTBOX = table_of(OutboxEntry)
_POLL = (
    sa.select(
        _OUTBOX.c.id, _OUTBOX.c.shard, _OUTBOX.c.tenant_id, _OUTBOX.c.app_id, _OUTBOX.c.channel, _OUTBOX.c.payload
    )
    .where(_OUTBOX.c.shard.in_(sa.bindparam("shards", expanding=True)))
    .order_by(_OUTBOX.c.id)
    .limit(BATCH)
)
_DELETE = sa.delete(_OUTBOX).where(_OUTBOX.c.id.in_(sa.bindparam("ids", expanding=True)))
_HOT_SIZE = sa.select(table_of(App).c.hot_history_size).where(table_of(App).c.id == sa.bindparam("app_id"))


def topic_for(prefix: str, tenant_id: str) -> str:
    return f"{prefix}.{tenant_id}"


def _polled(row: sa.Row[tuple[int, int, str, str, str, bytes]]) -> Committed:
    """A polled row in the form of a handed-off one (its message bytes read back, not re-encoded)."""
    row_id, shard, tenant_id, app_id, channel, payload = row
    envelope = OUTBOX_ENVELOPE_DECODER.decode(payload)
    message = bytes(envelope.message)
    head = MESSAGE_HEAD_DECODER.decode(message)
    return Committed(
        row_id,
        shard,
        tenant_id,
        app_id,
        channel,
        head.offset,
        head.epoch,
        head.id,
        payload,
        message,
        envelope.traceparent,
    )


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
        self._handed: list[Committed] = []
        self._handing = False  # the Publisher hands rows over (its database returns their ids)
        self._due: set[int] = set()  # held shards to poll on the next pass
        # Per held shard: (app, channel) → (epoch, offset) of the newest row this relay sent.
        self._sent: dict[int, dict[tuple[str, str], tuple[str, int]]] = {}
        self._poll_every = IDLE_POLL
        self._next_poll = 0.0
        self.published = 0
        self.handed_sent = 0  # of `published`, rows sent as handed off (no poll)
        # This instance's router, when it runs here: it delivers the rows to local subscribers
        # as they are sent (committed already), without waiting for the bus round trip.
        self.local: Callable[[Sequence[Committed]], None] | None = None

    @property
    def shards(self) -> list[int]:
        return sorted(self._locks)

    def hand_off(self, rows: list[Committed]) -> None:
        """The Publisher's rows, just committed (no I/O here: the relay's task sends them)."""
        self._handing = True
        if self._task is None or self._stopping:
            return  # not running: the rows wait in the outbox for a poll
        rows = [row for row in rows if row.shard in self._locks]
        if not rows:
            return  # shards other relays hold: they poll these rows
        if len(self._handed) + len(rows) > MAX_HANDED:
            self._handed.clear()  # a stalled relay: the outbox has them all, a poll sends them in order
            self._next_poll = 0.0
        else:
            self._handed.extend(rows)
        self.wakeup.set()

    def notify(self) -> None:
        """Rows were committed here: poll for them, unless the Publisher hands its rows over."""
        if not self._handing:
            self._next_poll = 0.0
            self.wakeup.set()

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
        self._sent.clear()
        self._handed.clear()

    async def _run(self) -> None:
        next_lock_check = 0.0
        while not self._stopping:
            try:
                now = time.monotonic()
                if now >= next_lock_check:
                    await self._manage_locks()
                    next_lock_check = now + LOCK_TTL / 3
                if self._locks:
                    moved = await self.pump_once(poll_all=now >= self._next_poll)
                else:
                    # Holding no shard, nothing here is ours to send: left queued, the loop below
                    # would never wait (it spun, stalling the event loop until the next lock check).
                    moved = 0
                    self._handed.clear()
                    self._due.clear()
                if moved == 0 and not self._handed and not self._due:
                    # No await since the checks: a hand_off cannot slip in between them and the clear.
                    self.wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(0.0, self._next_poll - time.monotonic())):
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
                self._sent.pop(shard, None)
                self._due.discard(shard)
        for shard in range(OUTBOX_SHARDS):
            if shard not in self._locks:
                lock = self.registry.lock(f"outbox-shard-{shard}", LOCK_TTL)
                if await lock.acquire(timeout=0):
                    self._locks[shard] = lock
                    self._sent[shard] = {}
                    self._due.add(shard)  # a former holder may have left rows
        try:
            # Alone, this relay gets every row handed over: polling is only the safety net. A relay
            # that is handed nothing (`pushwire relay`, its own process) keeps the cluster cadence.
            alone = len(await self.registry.instances()) <= 1
        except Exception:  # noqa: BLE001 - not knowing means polling as often as in a cluster
            alone = False
        self._poll_every = SAFETY_POLL if alone and self._handing else IDLE_POLL

    async def pump_once(self, poll_all: bool = True) -> int:
        """Send the handed-off rows, then poll the due shards (all held ones with `poll_all`);
        returns how many rows moved."""
        if not self._locks:
            return 0
        moved = await self._send_handed()
        if poll_all:
            self._due.update(self._locks)
            self._next_poll = time.monotonic() + self._poll_every
        if self._due:
            moved += await self._poll()
        return moved

    async def _send_handed(self) -> int:
        rows, self._handed = self._handed, []
        ready: list[Committed] = []
        rows.sort(key=lambda r: r.id)  # within a shard, commit order; per channel, offset order
        for row in rows:
            sent = self._sent.get(row.shard)
            if sent is None:
                continue  # a shard another relay holds: it polls the row
            key = (row.app_id, row.channel)
            last = sent.get(key)
            if last is not None and last[0] == row.epoch and row.offset <= last[1]:
                continue  # a poll sent it already
            if row.offset == 1 or (last is not None and last == (row.epoch, row.offset - 1)):
                ready.append(row)
                sent[key] = (row.epoch, row.offset)
            else:
                self._due.add(row.shard)  # an older row may wait in the outbox: the poll keeps the order
        if not ready:
            return 0
        try:
            await self._send(ready)
        except BaseException:
            for shard in {row.shard for row in ready}:
                # What was sent is unknown now: the shard's next rows go through a poll, in order.
                if shard in self._sent:
                    self._sent[shard] = {}
                    self._due.add(shard)
            raise
        self.handed_sent += len(ready)
        return len(ready)

    async def _poll(self) -> int:
        self._due.intersection_update(self._locks)
        shards = sorted(self._due)
        if not shards:
            return 0
        async with self.db.engine.connect() as conn:
            rows = [_polled(row) for row in await conn.execute(_POLL, {"shards": shards})]
        if rows:
            await self._send(rows)
            for row in rows:
                sent = self._sent.get(row.shard)
                if sent is None:
                    continue
                if len(sent) >= MAX_CHANNELS_PER_SHARD:
                    sent.clear()  # forgotten channels only cost a poll when they are next handed off
                key = (row.app_id, row.channel)
                last = sent.get(key)
                if last is None or last[0] != row.epoch or last[1] < row.offset:
                    sent[key] = (row.epoch, row.offset)
        if len(rows) < BATCH:
            self._due.difference_update(shards)  # every row they held at the read has been sent
        return len(rows)

    async def _send(self, rows: Sequence[Committed]) -> None:
        """Hot history (one pipeline), local subscribers, the bus (one produce), one DELETE of the rows."""
        started_ns = time.time_ns()
        lists: dict[tuple[str, str], list[tuple[int, bytes]]] = {}
        for row in rows:
            lists.setdefault((row.app_id, row.channel), []).append((row.offset, row.message))
        try:
            await self.hot.append_many(
                [(app_id, channel, items, await self._hot_size(app_id)) for (app_id, channel), items in lists.items()]
            )
        except BackendUnavailable as exc:
            # Hot history is a fast path; recovery falls back to the database.
            log.warning("hot history not written: %s", exc)
        if self.local is not None:
            # After the hot history: a session refilling a gap from it must find what it was sent.
            try:
                self.local(rows)
            except Exception:
                log.exception("local delivery failed")  # the bus copy still reaches them
        spans: list[tuple[Span, Span]] = []
        records = [self._record(row, started_ns, spans) for row in rows]
        produced = False
        try:
            await self.bus.publish(records)
            produced = True
            for _, produce in spans:
                produce.end()
            async with self.db.writing() as conn:
                await conn.execute(_DELETE, {"ids": [row.id for row in rows]})
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

    def _record(self, row: Committed, started_ns: int, spans: list[tuple[Span, Span]]) -> OutgoingRecord:
        """The bus record of a row; a sampled message gets outbox.relay and kafka.produce spans, and
        the record carries kafka.produce's context (not the push span's) in its traceparent header."""
        headers = [route_header(row.app_id, row.epoch, row.offset), ("message_id", row.message_id.encode())]
        traceparent = row.traceparent
        topic = topic_for(self.prefix, row.tenant_id)
        if self.tracer is not None and is_sampled(traceparent) and time.monotonic() >= self._trace_after:
            # Decoded only for a sampled message: unsampled ones cost no tracing work at all.
            attrs = message_attributes(ENVELOPE_DECODER.decode(row.payload), self.instance_id)
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
        async with self.db.engine.connect() as conn:
            size = (await conn.execute(_HOT_SIZE, {"app_id": app_id})).scalar()
        value = int(size or 1000)
        self._hot_sizes[app_id] = (value, time.monotonic())
        return value
