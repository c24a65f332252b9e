"""From stored spans to what the console shows: per-message summaries and the waterfall."""

from __future__ import annotations

import datetime as dt
import re

import msgspec

from pushwire.tracing.records import RecentEntry, StoredSpan, TraceSummary, WaterfallRow
from pushwire.tracing.store import SpanStore

TRACE_ID = re.compile(r"[0-9a-f]{32}")
AXIS = 1000.0  # the waterfall's SVG width in user units
MAX_DEPTH = 9


class TraceFilter(msgspec.Struct, frozen=True):
    channel: str = ""
    user: str = ""
    min_ms: float = 0.0
    failed: bool = False

    @property
    def active(self) -> bool:
        return bool(self.channel or self.user or self.min_ms or self.failed)


def of_message(spans: list[StoredSpan], app_id: str, message_id: str) -> list[StoredSpan]:
    """A batch push is one trace for many messages: keep this message's spans and the shared ones.

    Only spans of `app_id` count: trace ids are ours (a caller's traceparent is only a link), but a
    trace id is no secret, so the filter stays."""
    return [
        s
        for s in spans
        if s.attributes.get("app_id") == app_id
        and (not message_id or s.attributes.get("message_id", message_id) == message_id)
    ]


def summarize(entry: RecentEntry, spans: list[StoredSpan]) -> TraceSummary:
    mine = of_message(spans, entry.app_id, entry.message_id)
    start = min((s.start_ns for s in mine), default=entry.ts_ns)
    end = max((s.end_ns for s in mine), default=start)
    users = {str(s.attributes["user_id"]) for s in mine if "user_id" in s.attributes}
    return TraceSummary(
        key=entry.message_id or entry.trace_id,
        trace_id=entry.trace_id,
        message_id=entry.message_id,
        channels=entry.channels,
        event=entry.event,
        start_ns=start,
        latency_ms=round((end - start) / 1e6, 2),
        spans=len(mine),
        instances=sorted({s.instance for s in mine}),
        users=sorted(users),
        failed=entry.failed or any(s.error for s in mine),
        replay_of=entry.replay_of,
        started=iso(start),
    )


def iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def matches(summary: TraceSummary, f: TraceFilter) -> bool:
    if f.user and f.user not in summary.users and f"user.{f.user}" not in summary.channels:
        return False
    if f.min_ms and summary.latency_ms < f.min_ms:
        return False
    return not (f.failed and not summary.failed)


async def recent_summaries(
    store: SpanStore, app_id: str, f: TraceFilter, *, limit: int = 50, scan: int = 200
) -> tuple[list[TraceSummary], int]:
    """Newest first: the `scan` newest messages (matching the channel) are read, `limit` shown.

    Returns the rows and how many entries the app's recent list holds."""
    entries = await store.recent(app_id)
    candidates = [e for e in entries if not f.channel or f.channel in e.channels][:scan]
    traces = await store.traces([e.trace_id for e in candidates])
    rows = [s for s in (summarize(e, traces[e.trace_id]) for e in candidates) if matches(s, f)]
    return rows[:limit], len(entries)


def waterfall(spans: list[StoredSpan]) -> list[WaterfallRow]:
    """Depth-first by start time; a span whose parent is not in the list (e.g. the caller's) is a root."""
    if not spans:
        return []
    known = {s.span_id for s in spans}
    children: dict[str, list[StoredSpan]] = {}
    for s in spans:
        children.setdefault(s.parent_id if s.parent_id in known else "", []).append(s)
    t0 = min(s.start_ns for s in spans)
    total = max(max(s.end_ns for s in spans) - t0, 1)
    rows: list[WaterfallRow] = []
    stack = [(s, 0) for s in sorted(children.get("", []), key=lambda s: s.start_ns, reverse=True)]
    while stack:
        span, depth = stack.pop()
        x = (span.start_ns - t0) / total * AXIS
        rows.append(
            WaterfallRow(
                span=span,
                depth=min(depth, MAX_DEPTH),
                offset_ms=round((span.start_ns - t0) / 1e6, 3),
                duration_ms=round((span.end_ns - span.start_ns) / 1e6, 3),
                x=round(x, 1),
                width=round(max((span.end_ns - span.start_ns) / total * AXIS, 2.0), 1),
            )
        )
        kids = sorted(children.get(span.span_id, []), key=lambda s: s.start_ns, reverse=True)
        stack.extend((k, depth + 1) for k in kids)
    return rows


async def load_trace(store: SpanStore, app_id: str, key: str) -> tuple[str, list[StoredSpan]] | None:
    """(trace id, this message's spans) for a message id — or a trace id (failed publishes) — of
    `app_id`; None when unknown, expired, or another app's (the console answers 404)."""
    trace_id = await store.trace_of(key) if len(key) <= 64 else None
    message_id = key
    if trace_id is None:
        if not TRACE_ID.fullmatch(key):
            return None
        trace_id, message_id = key, ""
    spans = of_message(await store.spans(trace_id), app_id, message_id)
    return (trace_id, spans) if spans else None
