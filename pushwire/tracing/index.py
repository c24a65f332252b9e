"""Sampled publishes into the span store's indexes: the app's recent list and message id → trace."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pushwire.tracing.records import RecentEntry
from pushwire.tracing.store import SpanStore

if TYPE_CHECKING:
    from pushwire.messaging.publish import PublishRequest, PublishResult


def index_publish(
    store: SpanStore,
    trace_id: str,
    app_id: str,
    requests: Sequence[PublishRequest],
    results: Sequence[PublishResult] | None,
    ts_ns: int,
) -> None:
    """List each request under `trace_id`. `results` None: the publish failed, each is listed failed."""
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
                ts_ns=ts_ns,
                message_id=result.id if result else "",
                failed=result is None,
                replay_of=req.replay_of or "",
            )
        )
