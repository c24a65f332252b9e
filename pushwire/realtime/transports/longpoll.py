"""GET /api/v1/longpoll and POST /api/v1/ack: the HTTP transport for clients without WebSocket."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.params import Parameter

from pushwire.errors import ApiError
from pushwire.names import is_channel
from pushwire.realtime import protocol as p
from pushwire.realtime.tokens import ClientIdentity
from pushwire.realtime.transports.auth import identify, origin_allowed
from pushwire.runtime import Runtime


class ReadNotice(msgspec.Struct):
    channel: str
    offset: int


class PollBody(msgspec.Struct, omit_defaults=True):
    messages: list[msgspec.Raw]
    cursor: str
    welcome: p.Welcome | None = None
    subscribed: list[p.Subscribed] | None = None
    # Another connection of the user acknowledged up to `offset` (a live notice; moves no position).
    reads: list[ReadNotice] | None = None


class AckBody(msgspec.Struct, forbid_unknown_fields=True):
    channel: str
    offset: int


class AckResult(msgspec.Struct):
    channel: str
    offset: int


async def client_identity(request: Request[Any, Any, Any], runtime: Runtime) -> ClientIdentity:
    identity = await identify(runtime.tokens, request.query_params, request.headers)
    if not origin_allowed(identity, request.headers.get("origin")):
        raise ApiError(403, "origin_not_allowed", "this Origin is not allowed for the app")
    return identity


def _hangup(request: Request[Any, Any, Any]) -> Callable[[], Awaitable[None]]:
    """Returns when the client disconnects: a GET has no body, so the next ASGI message is the disconnect."""

    async def wait() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return wait


@get("/api/v1/longpoll", tags=["client API"], summary="Long-poll: messages after the cursor, or wait up to `timeout` s")
async def longpoll(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    channel: list[str] | None = Parameter(query="channel", default=None),
    cursor: str | None = Parameter(query="cursor", default=None),
    timeout: int = Parameter(query="timeout", default=25, ge=1, le=30),
) -> PollBody:
    identity = await client_identity(request, runtime)
    rooms = runtime.poller.rooms(identity, channel or [])
    result = await runtime.poller.poll(identity, rooms, cursor, float(timeout), "longpoll", _hangup(request))
    return PollBody(
        messages=[msgspec.Raw(m.encode()) for m in result.messages],
        cursor=result.cursor,
        welcome=result.welcome,
        subscribed=result.subscribed or None,
        reads=[ReadNotice(channel=r.channel, offset=r.offset) for r in result.reads] or None,
    )


@post("/api/v1/ack", status_code=200, tags=["client API"], summary="Acknowledge (cumulatively) up to an offset")
async def ack(request: Request[Any, Any, Any], runtime: Runtime) -> AckResult:
    identity = await client_identity(request, runtime)
    try:
        body = msgspec.json.decode(await request.body(), type=AckBody)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ApiError(
            422, "invalid_request", 'body must be {"channel": str, "offset": int}', [{"message": str(exc)}]
        ) from None
    if not is_channel(body.channel) or not identity.may_subscribe(body.channel):
        raise ApiError(403, "forbidden", "the token does not allow this channel")
    state = (await runtime.connections.recovery.state(identity.app_id, [body.channel]))[body.channel]
    if not 0 <= body.offset <= state.top:
        raise ApiError(
            422,
            "invalid_request",
            f"offset must be within 0..{state.top}",
            [{"field": "$.offset", "message": "out of range"}],
        )
    start_ns = time.time_ns()
    stored = await runtime.connections.acks.advance(identity.app_id, identity.user_id, body.channel, body.offset)
    frame = p.encode(p.Read(channel=body.channel, offset=stored))
    for session in runtime.hub.user_sessions(identity.app_id, identity.user_id):
        session.enqueue(frame)
    runtime.read_sync.notify(identity.tenant_id, identity.app_id, identity.user_id, body.channel, stored)
    await runtime.tracing.acks.ack(
        identity.app_id, identity.user_id, body.channel, body.offset, stored, start_ns, "http"
    )
    return AckResult(channel=body.channel, offset=stored)
