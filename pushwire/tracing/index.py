"""Sampled publishes into the span store's indexes: the app's recent list and message id → trace."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.trace import Span

from pushwire.tracing.records import RecentEntry
from pushwire.tracing.store import SpanStore

if TYPE_CHECKING:
    from pushwire.messaging.publish import PublishRequest, PublishResult


def index_publish(
    store: SpanStore,
    span: Span,
    app_id: str,
    requests: Sequence[PublishRequest],
    results: Sequence[PublishResult] | None,
) -> None:
    """`results` None: the publish failed, and each request is listed (failed) under its trace id."""
    trace_id, now = f"{span.get_span_context().trace_id:032x}", time.time_ns()
    for i, req in enumerate(requests):
        result = results[i] if results is not None else None
        if result is not None and result.duplicate:
            continue  # nothing was published
        store.add_recent(
            RecentEntry(
                trace_id=trace_id,
                app_id=app_id,
                event=req.event,
                channels=list(req.channels),
                ts_ns=now,
                message_id=result.id if result else "",
                failed=result is None,
                replay_of=req.replay_of or "",
            )
        )
    if results is not None and len(results) == 1:
        span.set_attribute("message_id", results[0].id)
