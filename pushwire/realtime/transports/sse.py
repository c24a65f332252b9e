"""GET /api/v1/sse: long-poll semantics, streamed as Server-Sent Events.

Each message event's id is the cursor after it, so a browser's EventSource resumes exactly
there through Last-Event-ID. The stream ends with `event: reconnect` (data `{"code", "reason"}`,
the WebSocket close code that means the same) when the server shuts down, or when the
connection's credentials no longer hold: checked before each batch is sent, so nothing is sent
after a token expired or its key was revoked.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, get
from litestar.params import Parameter
from litestar.response import Stream

from pushwire.errors import ApiError, BackendUnavailable
from pushwire.realtime import protocol as p
from pushwire.realtime.polling import PollResult
from pushwire.realtime.tokens import ClientIdentity
from pushwire.realtime.transports.longpoll import client_identity
from pushwire.runtime import Runtime


class Reconnect(msgspec.Struct):
    code: int
    reason: str


def _reconnect(code: int, reason: str) -> str:
    return f"event: reconnect\ndata: {p.encode(Reconnect(code=code, reason=reason))}\n\n"


async def _refused(runtime: Runtime, identity: ClientIdentity) -> str | None:
    """Why the stream must end now (token expired, key revoked, app disabled), or None."""
    if runtime.tokens.expired(identity):
        return "token expired"
    return await runtime.tokens.revalidate(identity)


def _data(frame: str) -> str:
    """`data:` lines of one event. New frames are compact JSON (one line); a message stored before
    publish compacted `data` may hold raw newlines, and each line must be its own `data:` field,
    else the client sees the event cut at the first one."""
    if "\n" not in frame and "\r" not in frame:
        return f"data: {frame}\n"
    return "".join(f"data: {line}\n" for line in frame.splitlines())


def _batch(result: PollResult) -> list[str]:
    out = [f"event: subscribed\ndata: {p.encode(s)}\n\n" for s in result.subscribed]
    out += [
        f"id: {after}\nevent: message\n{_data(m)}\n" for m, after in zip(result.messages, result.cursors, strict=True)
    ]
    out += [f"event: read\ndata: {p.encode(r)}\n\n" for r in result.reads]
    return out


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
    # Validate the cursor (and take the connection slot) before the stream starts, so a bad one is
    # a 400 (no slot: 429), not a broken stream.
    first = await runtime.poller.poll(identity, rooms, start, 0.0, "sse")

    async def events() -> AsyncIterator[str]:
        result = first
        if result.welcome is not None:
            yield f"event: welcome\ndata: {p.encode(result.welcome)}\n\n"
        quiet_since = float("-inf")  # the first keep-alive at once: it gives EventSource the cursor
        while not runtime.draining:
            reason = await _refused(runtime, identity)
            if reason is not None:
                yield _reconnect(p.Close.UNAUTHORIZED, reason)
                return
            for event in _batch(result):
                yield event
                quiet_since = time.monotonic()
            heartbeat = runtime.heartbeat  # the live-config value: it may change while streaming
            if time.monotonic() - quiet_since >= heartbeat - 0.5:
                yield f": keep-alive\nid: {result.cursor}\n\n"
                quiet_since = time.monotonic()
            try:
                result = await runtime.poller.poll(identity, rooms, result.cursor, float(heartbeat), "sse")
            except ApiError as exc:
                if exc.status == 429:
                    yield _reconnect(p.Close.LIMIT, exc.message)
                return
            except BackendUnavailable:
                yield _reconnect(p.Close.RECONNECT, "a backend is unavailable; reconnect")
                return
        yield _reconnect(p.Close.RECONNECT, "server shutting down")

    return Stream(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
