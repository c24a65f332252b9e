"""Spans of the consuming side: kafka.consume → router → hub.deliver (capped per message).

Only records that reach local subscribers and carry a sampled traceparent get spans, so the
no-subscriber path (every instance reads every record) and unsampled messages cost nothing.
Per message and instance, at most DELIVER_SPANS connections get a hub.deliver span; the router
span carries deliveries.total. A hub.deliver span ends when the session wrote the frame.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, set_span_in_context

from pushwire.bus.base import BusRecord
from pushwire.messaging.envelope import BusEnvelope
from pushwire.tracing.acks import AckTracer
from pushwire.tracing.context import context_from
from pushwire.tracing.records import TraceRef

if TYPE_CHECKING:
    from pushwire.realtime.hub import Hub
    from pushwire.realtime.session import Session

DELIVER_SPANS = 20


def message_attributes(envelope: BusEnvelope, instance_id: str) -> dict[str, Any]:
    m = envelope.message
    attrs: dict[str, Any] = {
        "app_id": envelope.app_id,
        "tenant_id": envelope.tenant_id,
        "channel": m.channel,
        "offset": m.offset,
        "message_id": m.id,
        "event": m.event,
        "instance_id": instance_id,
    }
    if envelope.replay_of:
        attrs["replay_of"] = envelope.replay_of
    return attrs


class DeliveryTrace:
    """Handed to Hub.deliver: offers to each session, with a span for the first DELIVER_SPANS."""

    __slots__ = ("attrs", "parent", "tracer")

    def __init__(self, tracer: Tracer, parent: Any, attrs: dict[str, Any]) -> None:
        self.tracer = tracer
        self.parent = parent
        self.attrs = attrs

    def offer_all(self, sessions: Sequence[Session], channel: str, offset: int, frame: str) -> None:
        # Past the first DELIVER_SPANS connections this is the hub's plain loop: no per-session branch.
        for session in sessions[DELIVER_SPANS:]:
            session.offer(channel, offset, frame)
        for session in sessions[:DELIVER_SPANS]:
            # The message's other attributes are on the parent router span: each one costs here.
            span = self.tracer.start_span(
                "hub.deliver",
                context=self.parent,
                attributes={
                    "app_id": self.attrs["app_id"],
                    "message_id": self.attrs["message_id"],
                    "user_id": session.user_id,
                    "session_id": session.id,
                    "transport": session.transport.kind,
                },
            )
            before = session.pending_frames()
            session.offer(channel, offset, frame)
            if session.closing is not None:
                span.set_status(Status(StatusCode.ERROR, f"connection closed: {session.closing[1]}"))
                span.set_attribute("close.code", int(session.closing[0]))
                span.end()
            elif session.pending_frames() > before:
                session.watch(span)  # ends when the writer has sent the frame
            else:
                # Held while the channel replays, or at/below the session's position (a duplicate).
                span.set_attribute("delivery", "buffered" if channel in session.subs else "skipped")
                span.end()


class RouteTracer:
    def __init__(self, tracer: Tracer, acks: AckTracer, instance_id: str) -> None:
        self.tracer = tracer
        self.acks = acks
        self.instance_id = instance_id

    def deliver(
        self, hub: Hub, envelope: BusEnvelope, record: BusRecord, traceparent: bytes, frame: str, received_ns: int
    ) -> int:
        m = envelope.message
        attrs = message_attributes(envelope, self.instance_id)
        consume = self.tracer.start_span(
            "kafka.consume",
            context=context_from(traceparent),
            kind=SpanKind.CONSUMER,
            start_time=received_ns,
            attributes={
                **attrs,
                "messaging.system": "kafka",
                "messaging.destination.name": record.topic,
                "messaging.kafka.partition": record.partition,
                "messaging.kafka.offset": record.offset,
            },
        )
        route = self.tracer.start_span("router", context=set_span_in_context(consume), attributes=attrs)
        ctx = route.get_span_context()
        if not ctx.trace_flags.sampled:  # not sampled after all (e.g. a malformed header): no spans
            n = hub.deliver(envelope.app_id, m.channel, m.offset, frame)
        else:
            n = hub.deliver(
                envelope.app_id,
                m.channel,
                m.offset,
                frame,
                DeliveryTrace(self.tracer, set_span_in_context(route), attrs),
            )
            ref = TraceRef(trace_id=f"{ctx.trace_id:032x}", span_id=f"{ctx.span_id:016x}", message_id=m.id)
            self.acks.remember(envelope.app_id, m.channel, m.offset, ref)
        route.set_attribute("deliveries.total", n)
        now = time.time_ns()
        route.end(now)
        consume.end(now)
        return n
