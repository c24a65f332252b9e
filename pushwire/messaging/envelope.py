"""Typed messages between modules and on the wire.

ClientMessage is exactly the spec's delivered message; it is encoded once at publish time and
those bytes travel through the outbox, the bus, the hot history and out to every socket.
"""

from __future__ import annotations

import datetime as dt

import msgspec


class ClientMessage(msgspec.Struct, frozen=True, tag_field="type", tag="message"):
    channel: str
    offset: int
    epoch: str
    id: str
    event: str
    # The JSON value exactly as the tenant sent it: never re-serialised.
    data: msgspec.Raw
    ts: str


class BusEnvelope(msgspec.Struct, frozen=True):
    """What the outbox relay produces and every router consumes."""

    tenant_id: str
    app_id: str
    message: ClientMessage
    # W3C trace context of the push request, so the trace continues on the consuming instance.
    traceparent: str | None = None
    replay_of: str | None = None


class Delivery(msgspec.Struct, frozen=True):
    channel: str
    offset: int
    epoch: str


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


ENCODER = msgspec.json.Encoder()
ENVELOPE_DECODER = msgspec.json.Decoder(BusEnvelope)
MESSAGE_DECODER = msgspec.json.Decoder(ClientMessage)
