"""GET /api/v1/sse: long-poll semantics, streamed as Server-Sent Events.

Each message event's id is the cursor after it, so a browser's EventSource resumes exactly
there through Last-Event-ID.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, get
from litestar.params import Parameter
from litestar.response import Stream

from pushwire.errors import ApiError
from pushwire.realtime import protocol as p
from pushwire.realtime.transports.longpoll import client_identity
from pushwire.runtime import Runtime


@get("/api/v1/sse", tags=["client API"], summary="Server-Sent Events stream (Last-Event-ID = cursor)")
async def sse(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    channel: list[str] | None = Parameter(query="channel", default=None),
    cursor: str | None = Parameter(query="cursor", default=None),
) -> Stream:
    identity = await client_identity(request, runtime)
    rooms = runtime.poller.rooms(identity, channel or [])
    start = request.headers.get("last-event-id") or cursor
    # Validate the cursor before the stream starts, so a bad one is a 400, not a broken stream.
    first = await runtime.poller.poll(identity, rooms, start, 0.0, "sse")

    async def events() -> AsyncIterator[str]:
        result = first
        if result.welcome is not None:
            yield f"event: welcome\ndata: {p.encode(result.welcome)}\n\n"
        while not runtime.draining:
            for s in result.subscribed:
                yield f"event: subscribed\ndata: {p.encode(s)}\n\n"
            for message, after in zip(result.messages, result.cursors, strict=True):
                yield f"id: {after}\nevent: message\ndata: {message}\n\n"
            if not result.messages:
                yield f": keep-alive\nid: {result.cursor}\n\n"
            try:
                result = await runtime.poller.poll(
                    identity, rooms, result.cursor, float(runtime.settings.heartbeat), "sse"
                )
            except ApiError:
                return
        yield "event: reconnect\ndata: {}\n\n"

    return Stream(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
