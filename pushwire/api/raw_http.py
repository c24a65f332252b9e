"""The push routes' HTTP plumbing as plain ASGI: read the body, answer JSON.

The push API is the hot path of every tenant backend. Through Litestar's handler machinery a
request costs ~120 µs of CPU before and after the handler runs (a Request object, dependency
resolution, the Response pipeline) — as much as everything the handler does after the database.
These routes are still Litestar routes (`@asgi`): its router, middleware and exception handlers
(the spec's JSON error bodies) apply unchanged; only the per-request objects are skipped.
"""

from __future__ import annotations

from typing import Any

from pushwire.errors import ApiError

MAX_BODY = 1024 * 1024
_JSON_HEADERS = [(b"content-type", b"application/json")]

Scope = dict[str, Any]
Receive = Any
Send = Any


async def read_body(scope: Scope, receive: Receive, limit: int = MAX_BODY) -> bytes:
    """The whole request body; 413 past `limit` (read no further), 405 for a method but POST."""
    if scope["method"] != "POST":
        raise ApiError(405, "method_not_allowed", "use POST", headers={"Allow": "POST"})
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise ApiError(413, "payload_too_large", f"request body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "bad_request", "the client went away before sending its body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"request body over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def send_json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
