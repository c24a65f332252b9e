"""Request bodies of the Pusher HTTP API, as the server libraries send them (notes §4.5)."""

from __future__ import annotations

import msgspec


class TriggerBody(msgspec.Struct, frozen=True):
    """POST /apps/{app_id}/events. The libraries always send `channels`, even for one channel."""

    name: str
    data: str
    channels: list[str] | None = None
    channel: str | None = None
    socket_id: str | None = None
    info: str | None = None


class BatchEvent(msgspec.Struct, frozen=True):
    """One item of POST /apps/{app_id}/batch_events: one channel each."""

    name: str
    data: str
    channel: str
    socket_id: str | None = None
    info: str | None = None


class BatchBody(msgspec.Struct, frozen=True):
    batch: list[BatchEvent]
