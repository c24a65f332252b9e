"""The push span (SERVER): child of the caller's traceparent; errors mapped to span status."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from pushwire.errors import ApiError, BackendUnavailable
from pushwire.tracing.context import context_from, format_traceparent


@contextmanager
def push_span(tracer: Tracer, route: str, incoming: str | None, parent: Context | None = None) -> Iterator[Span]:
    """4xx answers are the caller's mistake (status left unset, http status recorded); 5xx and
    unexpected exceptions set ERROR. `parent` overrides the incoming header (forced sampling)."""
    context = parent if parent is not None else context_from(incoming)
    with tracer.start_as_current_span(
        "push",
        context=context,
        kind=SpanKind.SERVER,
        record_exception=False,
        set_status_on_exception=False,
        attributes={"http.route": route},
    ) as span:
        try:
            yield span
        except ApiError as exc:
            if span.is_recording():
                span.set_attribute("http.response.status_code", exc.status)
                span.set_attribute("error.code", exc.code)
                if exc.status >= 500:
                    span.set_status(Status(StatusCode.ERROR, exc.message))
            raise
        except BackendUnavailable as exc:
            if span.is_recording():
                span.set_attribute("http.response.status_code", 503)
                span.set_status(Status(StatusCode.ERROR, str(exc)))
            raise
        except Exception as exc:
            if span.is_recording():
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:300]))
            raise


def downstream_traceparent(span: Span) -> str | None:
    """What the envelope carries: the push span's context — also when not sampled (flags 00), so
    the relay and routers skip the message; never the caller's raw header."""
    ctx = span.get_span_context()
    return format_traceparent(ctx) if ctx.is_valid else None
