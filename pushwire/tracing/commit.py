"""db.commit spans and the span store's message index: the Publisher's observer.

A transaction usually serves one trace (a push, a batch push, a console replay): one db.commit
span, child of that push span (a root for replays), and each message indexed under that trace.

Group commit puts several single pushes — several traces — in one transaction. Then:
  - one shared db.commit span is the transaction (a root of its own trace, sampled when any of its
    pushes is, linked to each sampled push span);
  - each sampled push gets its own db.commit span, child of its push span, over the same interval,
    with `commit.messages` and a link to the shared span (its id also in `commit.trace_id/span_id`);
  - each message is indexed under its own trace, so its waterfall holds its own chain.
Unsampled pushes in the transaction (no traceparent) get no span and no index entry.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

from pushwire.tracing.context import context_from, forced_context, format_traceparent, is_sampled, parse_traceparent
from pushwire.tracing.index import index_publish
from pushwire.tracing.sampling import draw
from pushwire.tracing.store import SpanStore

if TYPE_CHECKING:
    from pushwire.messaging.publish import PublishRequest, PublishResult


class _Member:
    """The requests of one trace in the transaction, and their db.commit span."""

    __slots__ = ("indices", "span")

    def __init__(self, span: Span, indices: list[int]) -> None:
        self.span = span
        self.indices = indices


class CommitWatch:
    """Spans of one transaction; `traceparent` stands in for requests that carry none — set only
    when replays are traced here, so an unsampled push keeps no traceparent."""

    __slots__ = ("app_id", "members", "requests", "shared", "store", "traceparent")

    def __init__(
        self,
        store: SpanStore,
        app_id: str,
        requests: Sequence[PublishRequest],
        shared: Span,
        members: list[_Member],
        *,
        stand_in: bool,
    ) -> None:
        self.store = store
        self.app_id = app_id
        self.requests = requests
        self.shared = shared
        self.members = members
        self.traceparent: str | None = format_traceparent(shared.get_span_context()) if stand_in else None

    def committed(self, results: Sequence[PublishResult]) -> None:
        now = time.time_ns()
        for m in self.members:
            mine = [results[i] for i in m.indices]
            if len(mine) == 1:
                m.span.set_attribute("message_id", mine[0].id)
            self._index(m, mine, now)
        self._end(now)

    def failed(self, exc: BaseException) -> None:
        now = time.time_ns()
        if isinstance(exc, Exception):  # not a cancellation (shutdown): a failed publish, listed as such
            for span in self._spans():
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:300]))
            for m in self.members:
                self._index(m, None, now)
        self._end(now)

    def _spans(self) -> list[Span]:
        spans = [m.span for m in self.members]
        return spans if any(s is self.shared for s in spans) else [*spans, self.shared]

    def _end(self, now: int) -> None:
        for span in self._spans():
            span.end(now)

    def _index(self, member: _Member, results: list[PublishResult] | None, now: int) -> None:
        trace_id = f"{member.span.get_span_context().trace_id:032x}"
        index_publish(self.store, trace_id, self.app_id, [self.requests[i] for i in member.indices], results, now)


class CommitTracer:
    """Implements messaging.publish.PublishObserver (the core calls it; it never imports us).

    A request's traceparent says whether it is traced: sampled, it names the push span; absent on a
    push, the push was not sampled. Only a replay (no push span) starts its trace here, drawn
    against our ratio. A transaction with nothing traced costs a scan of its requests."""

    def __init__(self, tracer: Tracer, store: SpanStore, ratio: float) -> None:
        self.tracer = tracer
        self.store = store
        self.ratio = ratio

    def transaction(self, tenant_id: str, app_id: str, requests: Sequence[PublishRequest]) -> CommitWatch | None:
        traces: dict[str, list[int]] = {}  # a sampled push span's traceparent → its requests
        replays: list[int] = []
        for i, req in enumerate(requests):
            if req.traceparent is not None:
                if is_sampled(req.traceparent):
                    traces.setdefault(req.traceparent, []).append(i)
            elif req.replay_of is not None:
                replays.append(i)
        if replays and not draw(self.ratio):
            replays = []
        if not traces and not replays:
            return None  # nothing in it is traced: no span, no index entry
        attrs: dict[str, str | int] = {"app_id": app_id, "tenant_id": tenant_id, "messages": len(requests)}
        start = time.time_ns()
        if len(traces) == 1 and not replays:
            [(parent, indices)] = traces.items()
            span = self._span(context_from(parent), attrs, start)
            if not span.is_recording():  # a malformed parent: the sampler dropped it
                return None
            return CommitWatch(self.store, app_id, requests, span, [_Member(span, indices)], stand_in=False)
        if not traces:  # replays only: their trace starts at this db.commit
            span = self._span(forced_context(), attrs, start)
            return CommitWatch(self.store, app_id, requests, span, [_Member(span, replays)], stand_in=True)
        return self._grouped(tenant_id, app_id, requests, traces, replays, attrs, start)

    def _grouped(
        self,
        tenant_id: str,
        app_id: str,
        requests: Sequence[PublishRequest],
        traces: dict[str, list[int]],
        replays: list[int],
        attrs: dict[str, str | int],
        start: int,
    ) -> CommitWatch:
        links = [Link(ctx) for tp in traces if (ctx := parse_traceparent(tp)) is not None]
        # Forced: a member is traced, and its link must resolve.
        shared = self._span(
            forced_context(), {**attrs, "commit.traces": len(traces) + (1 if replays else 0)}, start, links
        )
        ctx = shared.get_span_context()
        members = [
            _Member(
                self._span(
                    context_from(tp),
                    {
                        "app_id": app_id,
                        "tenant_id": tenant_id,
                        "messages": len(ix),
                        "commit.messages": len(requests),
                        "commit.trace_id": f"{ctx.trace_id:032x}",
                        "commit.span_id": f"{ctx.span_id:016x}",
                    },
                    start,
                    [Link(ctx)],
                ),
                ix,
            )
            for tp, ix in traces.items()
        ]
        if replays:  # requests without a push span of their own belong to the shared trace
            members.append(_Member(shared, replays))
        return CommitWatch(self.store, app_id, requests, shared, members, stand_in=bool(replays))

    def _span(self, context: Context, attrs: dict[str, str | int], start: int, links: list[Link] | None = None) -> Span:
        return self.tracer.start_span(
            "db.commit",
            context=context,
            kind=SpanKind.CLIENT,
            attributes=attrs,
            links=links,
            start_time=start,
            record_exception=False,
            set_status_on_exception=False,
        )
