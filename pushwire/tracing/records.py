"""What the span store keeps, as msgspec Structs (encoded as JSON in the cache)."""

from __future__ import annotations

import msgspec

AttrValue = str | int | float | bool | list[str | int | float | bool]


class SpanLink(msgspec.Struct, frozen=True):
    """A span link: the caller's span on a push, the shared transaction on a grouped db.commit."""

    trace_id: str  # 32 hex
    span_id: str  # 16 hex


class StoredSpan(msgspec.Struct, frozen=True, omit_defaults=True):
    """One finished span, as any instance recorded it."""

    trace_id: str  # 32 hex
    span_id: str  # 16 hex
    name: str
    start_ns: int  # unix epoch nanoseconds
    end_ns: int
    instance: str
    parent_id: str = ""
    kind: str = "internal"
    error: bool = False
    status_message: str = ""
    attributes: dict[str, AttrValue] = {}
    links: list[SpanLink] = []


class RecentEntry(msgspec.Struct, frozen=True, omit_defaults=True):
    """A published (or failed) message in an app's recent list; newest first."""

    trace_id: str
    app_id: str
    event: str
    channels: list[str]
    ts_ns: int
    message_id: str = ""  # empty when the publish failed (nothing was stored)
    failed: bool = False
    replay_of: str = ""


class TraceRef(msgspec.Struct, frozen=True):
    """Where a routed delivery sits in its trace: client.ack spans become its children."""

    trace_id: str
    span_id: str
    message_id: str


class TraceSummary(msgspec.Struct, frozen=True):
    """One row of the console's recent-messages list."""

    key: str  # message id, or the trace id of a failed publish
    trace_id: str
    message_id: str
    channels: list[str]
    event: str
    start_ns: int
    latency_ms: float
    spans: int
    instances: list[str]
    users: list[str]
    failed: bool
    started: str = ""  # RFC 3339 of start_ns, for display
    replay_of: str = ""


class WaterfallRow(msgspec.Struct, frozen=True):
    """One span of the waterfall page, placed on a 0..1000 time axis."""

    span: StoredSpan
    depth: int
    offset_ms: float
    duration_ms: float
    x: float
    width: float


SPAN_DECODER = msgspec.json.Decoder(StoredSpan)
RECENT_DECODER = msgspec.json.Decoder(RecentEntry)
REF_DECODER = msgspec.json.Decoder(TraceRef)
ENCODER = msgspec.json.Encoder()
