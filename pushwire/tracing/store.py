"""The span store shared by all instances, on the cache backend (memory:// or redis://).

Writes are buffered and flushed in batches (every FLUSH_INTERVAL or FLUSH_SPANS spans, two
round trips per flush), never one round trip per span. Everything is bounded: per-trace span
lists are capped and expire after TTL; each app's recent-message index keeps RECENT_CAP entries.
Keys (under the cache prefix):
  tr:t:<trace_id>            origin spans (push, db.commit, outbox.relay, kafka.produce), newest first
  tr:d:<trace_id>            delivery spans (kafka.consume, router, hub.deliver, client.ack)
  tr:m:<message_id>          → trace id
  tr:r:<app_id>              recent messages of the app (RecentEntry), newest first
  tr:a:<app>:<channel>:<off> → TraceRef of the routed delivery, for client.ack spans
Delivery spans have their own list so that a broadcast seen by many instances cannot push
the push and commit spans out of the capped list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict

from pushwire.cache.base import Cache, ListPush
from pushwire.errors import BackendUnavailable
from pushwire.tasks import cancel_and_wait
from pushwire.tracing.records import (
    ENCODER,
    RECENT_DECODER,
    REF_DECODER,
    SPAN_DECODER,
    RecentEntry,
    StoredSpan,
    TraceRef,
)

log = logging.getLogger(__name__)

TTL = 3600.0
ORIGIN_CAP = 1024
DELIVERY_CAP = 2048
RECENT_CAP = 1000
FLUSH_INTERVAL = 0.2
FLUSH_SPANS = 256
MAX_PENDING = 20_000  # past this (cache down or far behind) new spans are dropped, and counted
DELIVERY_SPANS = frozenset({"kafka.consume", "router", "hub.deliver", "client.ack"})


def origin_key(trace_id: str) -> str:
    return f"tr:t:{trace_id}"


def delivery_key(trace_id: str) -> str:
    return f"tr:d:{trace_id}"


def message_key(message_id: str) -> str:
    return f"tr:m:{message_id}"


def recent_key(app_id: str) -> str:
    return f"tr:r:{app_id}"


def ref_key(app_id: str, channel: str, offset: int) -> str:
    return f"tr:a:{app_id}:{channel}:{offset}"


class SpanStore:
    def __init__(
        self,
        cache: Cache,
        *,
        ttl: float = TTL,
        flush_interval: float = FLUSH_INTERVAL,
        flush_spans: int = FLUSH_SPANS,
        recent_cap: int = RECENT_CAP,
    ) -> None:
        self.cache = cache
        self.ttl = ttl
        self.flush_interval = flush_interval
        self.flush_spans = flush_spans
        self.recent_cap = recent_cap
        self._spans: list[StoredSpan] = []
        self._recent: list[RecentEntry] = []
        self._values: dict[str, bytes] = {}
        self._pending = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_warning = 0.0
        self.written = 0
        self.dropped = 0

    # -- buffering (synchronous, no I/O: called on hot paths) -----------------------------
    def add_span(self, span: StoredSpan) -> None:
        if len(self._spans) >= MAX_PENDING:
            self.dropped += 1
            return
        self._spans.append(span)
        self._signal(len(self._spans))

    def add_recent(self, entry: RecentEntry) -> None:
        if len(self._recent) >= MAX_PENDING:
            self.dropped += 1
            return
        self._recent.append(entry)
        if entry.message_id:
            self._values[message_key(entry.message_id)] = entry.trace_id.encode()
        self._signal(len(self._recent))

    def add_ref(self, app_id: str, channel: str, offset: int, ref: TraceRef) -> None:
        if len(self._values) >= MAX_PENDING:
            self.dropped += 1
            return
        self._values[ref_key(app_id, channel, offset)] = ENCODER.encode(ref)
        self._signal(len(self._values))

    def _signal(self, size: int) -> None:
        self._pending.set()
        if size >= self.flush_spans:
            self._full.set()

    # -- flushing -------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="span-store-flush")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        with contextlib.suppress(Exception):
            await self.flush()

    async def _run(self) -> None:
        while True:
            await self._pending.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_interval):
                    await self._full.wait()
            try:
                await self.flush()
            except Exception:
                log.exception("span store flush failed")

    async def flush(self) -> int:
        """Write everything buffered; returns how many spans went. Lost (and counted) on cache errors."""
        spans, recent, values = self._spans, self._recent, self._values
        self._spans, self._recent, self._values = [], [], {}
        self._pending.clear()
        self._full.clear()
        if not (spans or recent or values):
            return 0
        lists: dict[tuple[str, int], list[bytes]] = defaultdict(list)
        for span in spans:
            if span.name in DELIVERY_SPANS:
                lists[(delivery_key(span.trace_id), DELIVERY_CAP)].append(ENCODER.encode(span))
            else:
                lists[(origin_key(span.trace_id), ORIGIN_CAP)].append(ENCODER.encode(span))
        for entry in sorted(recent, key=lambda e: e.ts_ns):  # the newest ends at the head
            lists[(recent_key(entry.app_id), self.recent_cap)].append(ENCODER.encode(entry))
        pushes = [ListPush(key, items, cap, self.ttl) for (key, cap), items in lists.items()]
        try:
            await self.cache.list_push_capped_many(pushes)
            await self.cache.set_many(values, self.ttl)
        except BackendUnavailable as exc:
            self.dropped += len(spans)
            if time.monotonic() - self._last_warning > 30:
                self._last_warning = time.monotonic()
                log.warning("span store: %d spans not written (%s)", len(spans), exc)
            return 0
        self.written += len(spans)
        return len(spans)

    # -- reads (the console, client.ack) --------------------------------------------------
    async def recent(self, app_id: str, limit: int | None = None) -> list[RecentEntry]:
        raw = await self.cache.list_range(recent_key(app_id), 0, (limit or self.recent_cap) - 1)
        return [RECENT_DECODER.decode(item) for item in raw]

    async def trace_of(self, message_id: str) -> str | None:
        raw = await self.cache.get(message_key(message_id))
        return raw.decode() if raw else None

    async def ref(self, app_id: str, channel: str, offset: int) -> TraceRef | None:
        raw = await self.cache.get(ref_key(app_id, channel, offset))
        return REF_DECODER.decode(raw) if raw else None

    async def traces(self, trace_ids: list[str]) -> dict[str, list[StoredSpan]]:
        """Spans of each trace (one round trip for all), oldest start first."""
        ids = list(dict.fromkeys(trace_ids))
        keys = [k for t in ids for k in (origin_key(t), delivery_key(t))]
        lists = await self.cache.list_range_many(keys, 0, -1)
        out: dict[str, list[StoredSpan]] = {}
        for i, trace_id in enumerate(ids):
            spans = [SPAN_DECODER.decode(raw) for raw in (*lists[2 * i], *lists[2 * i + 1])]
            out[trace_id] = sorted(spans, key=lambda s: (s.start_ns, s.end_ns))
        return out

    async def spans(self, trace_id: str) -> list[StoredSpan]:
        return (await self.traces([trace_id]))[trace_id]
