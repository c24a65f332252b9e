"""Typed messages between modules and on the wire.

ClientMessage is exactly the spec's delivered message; it is encoded once at publish time and
those bytes travel through the outbox, the bus, the hot history and out to every socket. Its
`data` is compact JSON (one line, no whitespace): the push API re-encodes what the tenant sent
(`compact`), so an SSE `data:` line can never be cut by a newline in the tenant's formatting.
"""

from __future__ import annotations

import datetime as dt

import msgspec


class ClientMessage(msgspec.Struct, frozen=True, tag_field="type", tag="message", omit_defaults=True):
    channel: str
    offset: int
    epoch: str
    id: str
    event: str
    # The tenant's JSON value, made compact once by the push API (`compact`); the Publisher and
    # everything after it keep these bytes as they are (replays copy the stored row).
    data: msgspec.Raw
    ts: str
    # Pusher-protocol messages only (pushwire/pusher), omitted otherwise: the Pusher connection
    # not to deliver to (a trigger's `socket_id`, a client event's sender) and, for client events
    # on presence channels, the sender's user id. After `ts`, which native messages end with.
    socket_id: str | None = None
    user_id: str | None = None


class BusEnvelope(msgspec.Struct, frozen=True):
    """What the outbox relay produces and every router consumes."""

    tenant_id: str
    app_id: str
    message: ClientMessage
    # W3C trace context of the push request, so the trace continues on the consuming instance.
    traceparent: str | None = None
    replay_of: str | None = None


class OutboxEnvelope(msgspec.Struct, frozen=True):
    """A BusEnvelope whose message is already encoded: the same JSON, so the Publisher encodes a
    message once and the relay reads a polled row's message bytes back without re-encoding."""

    tenant_id: str
    app_id: str
    message: msgspec.Raw
    traceparent: str | None = None
    replay_of: str | None = None


class RoutedEnvelope(msgspec.Struct, frozen=True):
    """A bus envelope read by a router that has the route header: only the message's bytes (the
    frame every subscriber gets); the other fields are skipped, not decoded."""

    message: msgspec.Raw


class MessageHead(msgspec.Struct, frozen=True):
    """The fields of a ClientMessage the relay needs of a polled row (decoding skips the rest)."""

    offset: int
    epoch: str
    id: str
    ts: str = ""


class Committed(msgspec.Struct, frozen=True):
    """One committed outbox row, handed by the Publisher to its instance's relay after the commit."""

    id: int  # outbox row id: commit order within the shard, and what the relay deletes
    shard: int
    tenant_id: str
    app_id: str
    channel: str
    offset: int
    epoch: str
    message_id: str
    payload: bytes  # the encoded bus envelope, as stored in the row
    message: bytes  # the encoded ClientMessage (inside payload), for the hot history
    traceparent: str | None


class Delivery(msgspec.Struct, frozen=True):
    channel: str
    offset: int
    epoch: str


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def compact(data: bytes | msgspec.Raw) -> bytes:
    """The JSON value re-encoded compact: same value, no whitespace, one line.

    Raises msgspec.DecodeError for what msgspec cannot represent (e.g. `1e400`) and RecursionError
    past its nesting limit; the push API turns both into 422."""
    return ENCODER.encode(_ANY_DECODER.decode(data))


# The first header of a message's bus record: its app, epoch and offset (the channel is the
# record's key), so every router dedupes and skips records nobody of its instance follows
# without decoding the value.
ROUTE = "route"


def route_header(app_id: str, epoch: str, offset: int) -> tuple[str, bytes]:
    return (ROUTE, f"{app_id} {epoch} {offset}".encode())


def parse_route(value: bytes) -> tuple[str, str, int] | None:
    """(app_id, epoch, offset) of a route header; None if it is not one."""
    parts = value.decode("ascii", "replace").split(" ")
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])


ENCODER = msgspec.json.Encoder()
_ANY_DECODER = msgspec.json.Decoder()
ENVELOPE_DECODER = msgspec.json.Decoder(BusEnvelope)
OUTBOX_ENVELOPE_DECODER = msgspec.json.Decoder(OutboxEnvelope)
ROUTED_ENVELOPE_DECODER = msgspec.json.Decoder(RoutedEnvelope)
MESSAGE_HEAD_DECODER = msgspec.json.Decoder(MessageHead)
MESSAGE_DECODER = msgspec.json.Decoder(ClientMessage)
