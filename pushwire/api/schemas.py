"""Request and response bodies of the server API, validated with msgspec."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from pushwire.messaging.envelope import ClientMessage, Delivery

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=164)]


class PushBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    event: str
    data: msgspec.Raw
    channels: list[str] | None = None
    users: list[str] | None = None
    broadcast: bool = False
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


class BatchBody(msgspec.Struct, forbid_unknown_fields=True):
    messages: list[msgspec.Raw]


class PushAccepted(msgspec.Struct):
    id: str
    deliveries: list[Delivery]
    duplicate: bool


class BatchItem(msgspec.Struct, omit_defaults=True):
    status: int
    id: str | None = None
    deliveries: list[Delivery] | None = None
    duplicate: bool | None = None
    error: str | None = None
    message: str | None = None
    details: list[dict[str, Any]] | None = None


class BatchResult(msgspec.Struct):
    results: list[BatchItem]


class Connection(msgspec.Struct):
    instance: str
    transport: str
    since: str


class Presence(msgspec.Struct):
    user_id: str
    online: bool
    connections: list[Connection]
    last_seen: str | None


class BulkPresence(msgspec.Struct):
    users: list[Presence]


class History(msgspec.Struct):
    channel: str
    epoch: str
    top: int
    messages: list[ClientMessage]
