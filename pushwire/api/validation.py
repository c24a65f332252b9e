"""Turning a push body into a PublishRequest, with the spec's 413 and 422 errors.

`data` is re-encoded compact here, once: what is stored, relayed, kept in hot history and sent on
every transport is one line of JSON whatever the tenant's formatting (SSE frames depend on it).
The app's max payload applies to those compact bytes — the size that is stored and delivered.
"""

from __future__ import annotations

from typing import Any

import msgspec

from pushwire.api.schemas import PushBody
from pushwire.errors import ApiError
from pushwire.messaging.envelope import compact
from pushwire.messaging.publish import PublishRequest
from pushwire.names import BROADCAST, is_channel, is_event, is_user_id, personal_channel
from pushwire.tenants.views import AppView

MAX_TARGETS = 100
_PUSH_DECODER = msgspec.json.Decoder(PushBody)


def invalid(message: str, details: list[dict[str, Any]]) -> ApiError:
    return ApiError(422, "invalid_request", message, details)


def too_deep(field: str = "$") -> ApiError:
    """msgspec's decoder stops at ~1,000 levels of nesting (a RecursionError, not a DecodeError)."""
    return invalid("request body is nested too deeply", [{"field": field, "message": "JSON nested too deeply"}])


def decode_error(exc: msgspec.DecodeError | msgspec.ValidationError) -> ApiError:
    text = str(exc)
    field = text.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in text else "$"
    kind = "schema" if isinstance(exc, msgspec.ValidationError) else "json"
    return invalid(
        "request body is not valid JSON" if kind == "json" else "request body does not match the schema",
        [{"field": field, "message": text.split(" - at `")[0]}],
    )


def parse_push(raw: bytes, app: AppView, traceparent: str | None = None) -> PublishRequest:
    try:
        body = _PUSH_DECODER.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise decode_error(exc) from None
    except RecursionError:
        raise too_deep() from None
    return to_request(body, app, traceparent)


def to_request(body: PushBody, app: AppView, traceparent: str | None) -> PublishRequest:
    details: list[dict[str, Any]] = []
    targets = [
        name
        for name, given in (
            ("channels", body.channels is not None),
            ("users", body.users is not None),
            ("broadcast", body.broadcast),
        )
        if given
    ]
    if len(targets) != 1:
        raise invalid(
            "give exactly one target: channels, users or broadcast",
            [{"field": "$", "message": f"targets given: {', '.join(targets) or 'none'}"}],
        )
    channels: list[str]
    if body.channels is not None:
        channels = body.channels
        _check_count("channels", channels, details)
        details += [
            {"field": f"$.channels[{i}]", "message": f"invalid channel name {c!r}"}
            for i, c in enumerate(channels)
            if not is_channel(c)
        ]
    elif body.users is not None:
        _check_count("users", body.users, details)
        details += [
            {"field": f"$.users[{i}]", "message": f"invalid user id {u!r}"}
            for i, u in enumerate(body.users)
            if not is_user_id(u)
        ]
        channels = [personal_channel(u) for u in body.users]
    else:
        channels = [BROADCAST]
    if not is_event(body.event):
        details.append({"field": "$.event", "message": "event must be 1..64 characters of [A-Za-z0-9_.:-]"})
    if details:
        raise invalid("request body does not match the schema", details)
    data = _compact(body.data)
    if len(data) > app.limits.max_payload_bytes:
        raise ApiError(
            413,
            "payload_too_large",
            f"data is {len(data)} bytes (compact JSON); this app allows {app.limits.max_payload_bytes}",
        )
    return PublishRequest(
        channels=tuple(dict.fromkeys(channels)),  # a channel named twice gets the message once
        event=body.event,
        data=msgspec.Raw(data),
        idempotency_key=body.idempotency_key,
        traceparent=traceparent,
    )


def _compact(data: msgspec.Raw) -> bytes:
    try:
        return compact(data)
    except msgspec.DecodeError as exc:  # valid JSON syntax msgspec cannot hold, e.g. 1e400
        raise invalid("data cannot be represented", [{"field": "$.data", "message": str(exc)}]) from None
    except RecursionError:
        raise too_deep("$.data") from None


def _check_count(field: str, values: list[str], details: list[dict[str, Any]]) -> None:
    if not 1 <= len(values) <= MAX_TARGETS:
        details.append({"field": f"$.{field}", "message": f"give 1..{MAX_TARGETS} {field} (got {len(values)})"})
