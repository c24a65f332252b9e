"""The push span (SERVER): a root of our own trace, opened once the caller is authenticated.

Whether a push is traced is ours to decide (Tracing.sampled(), or the console's forced sampling),
and decided before this: an unsampled push gets a shared no-op context manager yielding a
non-recording span — no SDK span, no ids, no OTel context (see sampling.py).

The caller's `traceparent` is neither the parent nor the sampling decision — a tenant could
otherwise force 100 % sampling with `-01`, or pick trace ids (the ratio sampler reads the trace
id) to always be sampled. It becomes a span link, so the caller's trace and ours can be joined.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanKind, Status, StatusCode, Tracer

from pushwire.errors import ApiError, BackendUnavailable
from pushwire.tracing.context import forced_context, format_traceparent, parse_traceparent

# What every unsampled push gets: stateless, so one instance serves all requests at once.
_UNSAMPLED: AbstractContextManager[Span] = nullcontext(INVALID_SPAN)


def push_span(
    tracer: Tracer,
    route: str,
    incoming: str | None,
    parent: Context | None = None,
    start_time: int | None = None,
    *,
    sampled: bool = True,
) -> AbstractContextManager[Span]:
    """`sampled`: our decision for this push (False: nothing is created). A sampled push's span is
    a forced root, so the SDK sampler does not draw a second time; `parent` may bring its own
    context (the console passes forced_context()). `incoming` (the caller's traceparent) is only
    linked. `start_time`: when the request arrived, as the span is opened after authentication."""
    if not sampled:
        return _UNSAMPLED
    return _recorded(tracer, route, incoming, parent if parent is not None else forced_context(), start_time)


@contextmanager
def _recorded(
    tracer: Tracer, route: str, incoming: str | None, parent: Context, start_time: int | None
) -> Iterator[Span]:
    """4xx answers are the caller's mistake (status left unset, http status recorded); 5xx and
    unexpected exceptions set ERROR. Not made the current span: nothing reads the OTel context
    (children are parented by the traceparent each request carries), so no attach/detach."""
    caller = parse_traceparent(incoming)
    span = tracer.start_span(
        "push",
        context=parent,  # no span in it: a root
        kind=SpanKind.SERVER,
        attributes={"http.route": route},
        links=[Link(caller)] if caller is not None else None,
        start_time=start_time,
    )
    try:
        yield span
    except ApiError as exc:
        span.set_attribute("http.response.status_code", exc.status)
        span.set_attribute("error.code", exc.code)
        if exc.status >= 500:
            span.set_status(Status(StatusCode.ERROR, exc.message))
        raise
    except BackendUnavailable as exc:
        span.set_attribute("http.response.status_code", 503)
        span.set_status(Status(StatusCode.ERROR, str(exc)))
        raise
    except Exception as exc:
        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:300]))
        raise
    finally:
        span.end()


def downstream_traceparent(span: Span) -> str | None:
    """What the envelope carries: the push span's context when the push is traced, else None (the
    publish observer, relay and routers then skip the message); never the caller's raw header."""
    if span is INVALID_SPAN:  # push_span's no-op for an unsampled push: the common case, answered first
        return None
    ctx = span.get_span_context()
    return format_traceparent(ctx) if ctx.trace_flags.sampled else None
