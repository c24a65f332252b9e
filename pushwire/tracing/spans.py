"""The push span (SERVER): a root of our own trace, opened once the caller is authenticated.

Whether a push is traced is ours to decide (the sample ratio, or the console's forced sampling):
the caller's `traceparent` is neither the parent nor the sampling decision — a tenant could
otherwise force 100 % sampling with `-01`, or pick trace ids (the ratio sampler reads the trace
id) to always be sampled. It becomes a span link, so the caller's trace and ours can be joined.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

from pushwire.errors import ApiError, BackendUnavailable
from pushwire.tracing.context import format_traceparent, parse_traceparent


@contextmanager
def push_span(
    tracer: Tracer,
    route: str,
    incoming: str | None,
    parent: Context | None = None,
    start_time: int | None = None,
) -> Iterator[Span]:
    """4xx answers are the caller's mistake (status left unset, http status recorded); 5xx and
    unexpected exceptions set ERROR. `incoming` (the caller's traceparent) is only linked;
    `parent` is ours (the console's forced context). `start_time`: when the request arrived, as the
    span is opened only after authentication."""
    caller = parse_traceparent(incoming)
    with tracer.start_as_current_span(
        "push",
        context=parent if parent is not None else Context(),  # an empty context: a root
        kind=SpanKind.SERVER,
        record_exception=False,
        set_status_on_exception=False,
        attributes={"http.route": route},
        links=[Link(caller)] if caller is not None else None,
        start_time=start_time,
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
