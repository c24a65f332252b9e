"""Who is traced: our own decision at each root, made before any span exists; the SDK follows it.

A push (or a console replay) draws against the sample ratio first. Not sampled: no span object,
no trace id, no OTel context — the envelope carries no traceparent, so the publish observer, the
relay and the routers skip the message. Sampled: its root span is opened with FORCE_SAMPLE, and
everything below follows its parent.
"""

from __future__ import annotations

from collections.abc import Sequence
from random import random

from opentelemetry.context import Context
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Decision, ParentBased, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from pushwire.tracing.context import FORCE_SAMPLE


def draw(ratio: float) -> bool:
    """Whether a new root is traced: random() is in [0, 1), so ratio 1 always is and 0 never."""
    return random() < ratio


class MessageSampler(Sampler):
    """The SDK's side: a root is recorded only when forced (we drew it, or the console's test push);
    past it, parent-based. An unforced root — e.g. from a malformed record header — is dropped.

    Parent-based is safe because every parent it sees is ours: the push span is always a root
    (the caller's traceparent is only a link, see spans.py), and the relay, routers and acks
    continue contexts that our push span made."""

    def __init__(self) -> None:
        self._inner = ParentBased(ALWAYS_OFF)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: object = None,
    ) -> SamplingResult:
        if parent_context is not None and parent_context.get(FORCE_SAMPLE):
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)
        return self._inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)  # type: ignore[arg-type]

    def get_description(self) -> str:
        return "MessageSampler{forced roots, parent-based}"
