"""The SpanProcessor that hands finished spans to the span store's buffer (no I/O here)."""

from __future__ import annotations

import logging

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from pushwire.tracing.records import AttrValue, SpanLink, StoredSpan
from pushwire.tracing.store import SpanStore

log = logging.getLogger(__name__)

_KINDS = {kind: kind.name.lower() for kind in SpanKind}


class StoreSpanProcessor(SpanProcessor):
    def __init__(self, store: SpanStore, instance_id: str) -> None:
        self.store = store
        self.instance_id = instance_id

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        # Runs inside span.end() on hot paths (router, hub): it must never raise into them.
        try:
            self._store(span)
        except Exception:
            log.exception("span %s not stored", span.name)

    def _store(self, span: ReadableSpan) -> None:
        ctx, parent, status = span.context, span.parent, span.status
        if ctx is None:
            return
        error = status.status_code is StatusCode.ERROR
        self.store.add_span(
            StoredSpan(
                trace_id=f"{ctx.trace_id:032x}",
                span_id=f"{ctx.span_id:016x}",
                parent_id=f"{parent.span_id:016x}" if parent is not None else "",
                name=span.name,
                start_ns=span.start_time or 0,
                end_ns=span.end_time or 0,
                instance=self.instance_id,
                kind=_KINDS[span.kind],
                error=error,
                status_message=(status.description or "") if error else "",
                attributes=_attributes(span),
                links=[
                    SpanLink(trace_id=f"{lk.context.trace_id:032x}", span_id=f"{lk.context.span_id:016x}")
                    for lk in span.links
                ],
            )
        )

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # the store's own flusher (async) writes; Tracing.stop flushes it


def _attributes(span: ReadableSpan) -> dict[str, AttrValue]:
    """A plain copy of the attributes (tuples encode as JSON arrays). The SDK's BoundedAttributes
    keeps a dict underneath; copying it directly is ~15x cheaper than through the mapping proxy."""
    raw = getattr(span, "_attributes", None)
    inner = getattr(raw, "_dict", None)
    return dict(inner) if isinstance(inner, dict) else dict(span.attributes or {})  # type: ignore[arg-type]
