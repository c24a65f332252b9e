"""hub.deliver spans of traced messages, each ended when its frame has been sent.

Each is kept with the session's sent-frame count at which its frame is out; checked once per
written batch, not per frame.
"""

from __future__ import annotations

from opentelemetry.trace import Span, Status, StatusCode


class WatchedSpans:
    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: list[tuple[int, Span]] = []

    def __bool__(self) -> bool:
        return bool(self._items)

    def add(self, sent_when: int, span: Span) -> None:
        self._items.append((sent_when, span))

    def sent(self, delivered: int) -> None:
        still = []
        for marker, span in self._items:
            if marker <= delivered:
                span.end()
            else:
                still.append((marker, span))
        self._items = still

    def end_all(self, reason: str | None = None) -> None:
        """Unsent frames' spans end, ERROR with `reason` when given."""
        items, self._items = self._items, []
        for _, span in items:
            if reason is not None:
                span.set_status(Status(StatusCode.ERROR, reason))
            span.end()
