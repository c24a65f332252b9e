"""client.ack spans: an ack (app, channel, offset) joins the trace of the message at that offset.

The router remembers the deliveries it traced in a bounded local map, so an ack on the
instance that delivered costs no I/O. A WebSocket ack comes from a connection this instance's
router delivered to, so the local map is all it asks: with most messages unsampled, a miss is the
common case and must not cost a cache round trip. An HTTP ack (long-poll/SSE) may reach another
instance than the one that delivered: on a miss it asks the shared store (one GET) — skipped when
the sample ratio is 0, where only forced (console) traces exist.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from opentelemetry.trace import SpanContext, SpanKind, TraceFlags, Tracer

from pushwire.errors import BackendUnavailable
from pushwire.tracing.context import parent_context
from pushwire.tracing.records import TraceRef
from pushwire.tracing.store import SpanStore

log = logging.getLogger(__name__)

LOCAL_REFS = 10_000


class AckTracer:
    def __init__(self, tracer: Tracer, store: SpanStore, instance_id: str, *, shared_lookup: bool) -> None:
        self.tracer = tracer
        self.store = store
        self.instance_id = instance_id
        self.shared_lookup = shared_lookup
        self._local: OrderedDict[tuple[str, str, int], TraceRef] = OrderedDict()

    def remember(self, app_id: str, channel: str, offset: int, ref: TraceRef) -> None:
        """Called by the router for each traced delivery: kept here and in the shared store."""
        key = (app_id, channel, offset)
        self._local[key] = ref
        if len(self._local) > LOCAL_REFS:
            self._local.popitem(last=False)
        self.store.add_ref(app_id, channel, offset, ref)

    async def find(self, app_id: str, channel: str, offset: int, *, shared: bool) -> TraceRef | None:
        ref = self._local.get((app_id, channel, offset))
        if ref is None and shared and self.shared_lookup:
            try:
                ref = await self.store.ref(app_id, channel, offset)
            except BackendUnavailable:
                return None
        return ref

    async def ack(
        self, app_id: str, user_id: str, channel: str, offset: int, stored: int, start_ns: int, transport: str
    ) -> None:
        """Record a client.ack span from start_ns to now, if the acked message was traced."""
        try:
            ref = await self.find(app_id, channel, offset, shared=transport != "ws")
        except Exception:
            log.debug("trace lookup for an ack failed", exc_info=True)
            return
        if ref is None:
            return
        parent = SpanContext(
            int(ref.trace_id, 16), int(ref.span_id, 16), is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
        )
        span = self.tracer.start_span(
            "client.ack",
            context=parent_context(parent),
            kind=SpanKind.SERVER,
            start_time=start_ns,
            attributes={
                "app_id": app_id,
                "user_id": user_id,
                "channel": channel,
                "offset": offset,
                "ack.stored": stored,
                "message_id": ref.message_id,
                "instance_id": self.instance_id,
                "transport": transport,
            },
        )
        span.end(time.time_ns())
