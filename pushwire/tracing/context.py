"""W3C traceparent strings ↔ OpenTelemetry span contexts, without a global propagator."""

from __future__ import annotations

import re

from opentelemetry import trace
from opentelemetry.context import Context, create_key, set_value
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")

# A context carrying this key starts a sampled trace whatever the ratio: the console's test push,
# and a group-commit transaction holding a sampled push (see tracing/commit.py).
FORCE_SAMPLE = create_key("pushwire-force-sample")


def forced_context() -> Context:
    return set_value(FORCE_SAMPLE, True, Context())


def format_traceparent(ctx: SpanContext) -> str:
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def parse_traceparent(value: str | bytes | None) -> SpanContext | None:
    """A remote span context, or None when absent or malformed (then a new trace starts)."""
    if not value:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    m = _TRACEPARENT.fullmatch(text.strip().lower())
    if m is None:
        return None
    trace_id, span_id = int(m.group(1), 16), int(m.group(2), 16)
    if trace_id == 0 or span_id == 0:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(m.group(3), 16) & 1))


def is_sampled(traceparent: str | bytes | None) -> bool:
    """Cheap check on the hot path (router, relay): the sampled bit of a well-formed header."""
    if not traceparent or len(traceparent) != 55:
        return False
    last = traceparent[-1]
    return last in ("1", "3", "5", "7", "9", "b", "d", "f") or last in (49, 51, 53, 55, 57, 98, 100, 102)


def parent_context(span_context: SpanContext | None) -> Context:
    """An OpenTelemetry Context whose current span is `span_context` (None: an empty one, for a root)."""
    if span_context is None:
        return Context()
    return trace.set_span_in_context(NonRecordingSpan(span_context), Context())


def context_from(traceparent: str | bytes | None) -> Context:
    return parent_context(parse_traceparent(traceparent))


def header(headers: tuple[tuple[str, bytes], ...], name: str = "traceparent") -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None
