"""POST /api/v1/push and /api/v1/push/batch."""

from __future__ import annotations

import time

import msgspec
from litestar import asgi

from pushwire.api.raw_http import Receive, Scope, Send, header, read_body, send_json
from pushwire.api.schemas import BatchBody, BatchItem, BatchResult, PushAccepted
from pushwire.api.signed import signed_request
from pushwire.api.validation import decode_error, parse_push, too_deep
from pushwire.errors import ApiError
from pushwire.messaging.publish import PublishRequest
from pushwire.runtime import Runtime
from pushwire.tenants.auth import Caller
from pushwire.tracing.spans import downstream_traceparent, push_span


def _check_enabled(runtime: Runtime) -> None:
    if not runtime.push_enabled:
        raise ApiError(503, "unavailable", "publishing is paused by the operators", headers={"Retry-After": "5"})


MAX_BATCH = 100
_BATCH_DECODER = msgspec.json.Decoder(BatchBody)


_ACCEPTED = msgspec.json.Encoder()


@asgi("/api/v1/push", is_mount=False, copy_scope=False, name="push")
async def push(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /api/v1/push: one message, 202 after the database commit (see raw_http for why ASGI)."""
    arrived = time.time_ns()
    runtime: Runtime = scope["litestar_app"].state.runtime
    body = await read_body(scope, receive)
    # Authenticated first: a refused request never opens a span (a flood of 401s writes nothing).
    # The push rate is taken with the nonce (one cache round trip), unless publishing is paused.
    cost = 1 if runtime.push_enabled else 0
    caller = await runtime.auth.authenticate(signed_request(scope, body), "push", cost)
    sampled = runtime.tracing.sampled()  # decided first: an unsampled push creates no span at all
    incoming = header(scope, b"traceparent") if sampled else None
    with push_span(runtime.tracing.tracer, "/api/v1/push", incoming, None, arrived, sampled=sampled) as span:
        if span.is_recording():
            span.set_attributes(
                {
                    "app_id": caller.app_id,
                    "tenant_id": caller.app.tenant_id,
                    "instance_id": runtime.settings.instance_id,
                }
            )
        _check_enabled(runtime)
        req = parse_push(body, caller.app, downstream_traceparent(span))
        result = await runtime.group_commit.publish(caller.app.tenant_id, caller.app_id, req)
        runtime.notify_published()
        if not result.duplicate:
            runtime.metrics.message_in(caller.app_id, 1)
        if span.is_recording():
            span.set_attributes(
                {
                    "message_id": result.id,
                    "channel": list(req.channels),
                    "event": req.event,
                    "duplicate": result.duplicate,
                    "http.response.status_code": 202,
                }
            )
    accepted = PushAccepted(id=result.id, deliveries=result.deliveries, duplicate=result.duplicate)
    await send_json(send, 202, _ACCEPTED.encode(accepted))


_BATCH_RESULT = msgspec.json.Encoder()


@asgi("/api/v1/push/batch", is_mount=False, copy_scope=False, name="push_batch")
async def push_batch(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /api/v1/push/batch: up to 100 messages, one result per message, in order."""
    arrived = time.time_ns()
    runtime: Runtime = scope["litestar_app"].state.runtime
    # Parsed during authentication, so its valid messages are taken from the push rate in the same
    # cache round trip as the nonce; its errors are raised after the signature's (the spec's order).
    body = await read_body(scope, receive)
    batch = _Batch(body, runtime.push_enabled)
    caller = await runtime.auth.authenticate(signed_request(scope, body), "push", batch)  # before the span
    sampled = runtime.tracing.sampled()
    incoming = header(scope, b"traceparent") if sampled else None
    with push_span(runtime.tracing.tracer, "/api/v1/push/batch", incoming, None, arrived, sampled=sampled) as span:
        if span.is_recording():
            span.set_attributes(
                {
                    "app_id": caller.app_id,
                    "tenant_id": caller.app.tenant_id,
                    "instance_id": runtime.settings.instance_id,
                }
            )
        result = await _publish_batch(runtime, caller, batch, downstream_traceparent(span))
    await send_json(send, 200, _BATCH_RESULT.encode(result))


class _Batch:
    """A batch body, parsed against the caller's app; called with the caller, it gives the cost
    (the valid messages; 0 when the body is refused as a whole or publishing is paused)."""

    def __init__(self, body: bytes, enabled: bool) -> None:
        self.body = body
        self.enabled = enabled
        self.error: ApiError | None = None
        self.items: list[BatchItem | None] = []
        self.valid: list[tuple[int, PublishRequest]] = []

    def __call__(self, caller: Caller) -> int:
        try:
            self.items, self.valid = _parse_batch(self.body, caller)
        except ApiError as exc:
            self.error = exc
            return 0
        return len(self.valid) if self.enabled else 0


def _parse_batch(body: bytes, caller: Caller) -> tuple[list[BatchItem | None], list[tuple[int, PublishRequest]]]:
    try:
        batch = _BATCH_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise decode_error(exc) from None
    except RecursionError:
        raise too_deep() from None
    if not 1 <= len(batch.messages) <= MAX_BATCH:
        raise ApiError(
            422,
            "invalid_request",
            f"give 1..{MAX_BATCH} messages",
            [{"field": "$.messages", "message": f"got {len(batch.messages)}"}],
        )
    items: list[BatchItem | None] = [None] * len(batch.messages)
    valid: list[tuple[int, PublishRequest]] = []
    for i, raw in enumerate(batch.messages):
        try:
            valid.append((i, parse_push(bytes(raw), caller.app, None)))
        except ApiError as exc:
            items[i] = BatchItem(status=exc.status, error=exc.code, message=exc.message, details=exc.details)
    return items, valid


async def _publish_batch(runtime: Runtime, caller: Caller, batch: _Batch, traceparent: str | None) -> BatchResult:
    _check_enabled(runtime)
    if batch.error is not None:
        raise batch.error
    items, valid = batch.items, batch.valid
    if valid:
        # The rate was taken for the whole batch at authentication: nothing partially published.
        requests = [msgspec.structs.replace(r, traceparent=traceparent) if traceparent else r for _, r in valid]
        results = await runtime.publisher.publish_many(caller.app.tenant_id, caller.app_id, requests)
        for (i, _), result in zip(valid, results, strict=True):
            items[i] = BatchItem(status=202, id=result.id, deliveries=result.deliveries, duplicate=result.duplicate)
        runtime.notify_published()
        runtime.metrics.message_in(caller.app_id, sum(1 for r in results if not r.duplicate))
    return BatchResult(results=[item for item in items if item is not None])
