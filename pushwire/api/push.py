"""POST /api/v1/push and /api/v1/push/batch."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Request, Response, post

from pushwire.api.schemas import BatchBody, BatchItem, BatchResult, PushAccepted
from pushwire.api.signed import signed_caller
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
_DOC = "Signed with a server key (X-Pushwire-Key, -Timestamp, -Nonce, -Signature); scope `push`."


@post(
    "/api/v1/push",
    status_code=202,
    tags=["server API"],
    summary="Publish one message (202 after the database commit)",
    description=_DOC,
    request_max_body_size=1024 * 1024,
)
async def push(request: Request[Any, Any, Any], runtime: Runtime) -> Response[PushAccepted]:
    arrived = time.time_ns()
    # Authenticated first: a refused request never opens a span (a flood of 401s writes nothing).
    caller, body = await signed_caller(request, runtime, "push")
    with push_span(runtime.tracing.tracer, "/api/v1/push", request.headers.get("traceparent"), None, arrived) as span:
        if span.is_recording():
            span.set_attributes(
                {
                    "app_id": caller.app_id,
                    "tenant_id": caller.app.tenant_id,
                    "instance_id": runtime.settings.instance_id,
                }
            )
        _check_enabled(runtime)
        await runtime.auth.take_push_tokens(caller)
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
    return Response(
        PushAccepted(id=result.id, deliveries=result.deliveries, duplicate=result.duplicate), status_code=202
    )


@post(
    "/api/v1/push/batch",
    status_code=200,
    tags=["server API"],
    summary="Publish up to 100 messages; one result per message, in order",
    description=_DOC,
)
async def push_batch(request: Request[Any, Any, Any], runtime: Runtime) -> BatchResult:
    arrived = time.time_ns()
    caller, body = await signed_caller(request, runtime, "push")  # before the span, as for push
    incoming = request.headers.get("traceparent")
    with push_span(runtime.tracing.tracer, "/api/v1/push/batch", incoming, None, arrived) as span:
        if span.is_recording():
            span.set_attributes(
                {
                    "app_id": caller.app_id,
                    "tenant_id": caller.app.tenant_id,
                    "instance_id": runtime.settings.instance_id,
                }
            )
        return await _batch(runtime, caller, body, downstream_traceparent(span))


async def _batch(runtime: Runtime, caller: Caller, body: bytes, traceparent: str | None) -> BatchResult:
    _check_enabled(runtime)
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
            valid.append((i, parse_push(bytes(raw), caller.app, traceparent)))
        except ApiError as exc:
            items[i] = BatchItem(status=exc.status, error=exc.code, message=exc.message, details=exc.details)
    if valid:
        # The whole batch is refused when over the rate: nothing partially published.
        await runtime.auth.take_push_tokens(caller, cost=len(valid))
        results = await runtime.publisher.publish_many(caller.app.tenant_id, caller.app_id, [r for _, r in valid])
        for (i, _), result in zip(valid, results, strict=True):
            items[i] = BatchItem(status=202, id=result.id, deliveries=result.deliveries, duplicate=result.duplicate)
        runtime.notify_published()
        runtime.metrics.message_in(caller.app_id, sum(1 for r in results if not r.duplicate))
    return BatchResult(results=[item for item in items if item is not None])
