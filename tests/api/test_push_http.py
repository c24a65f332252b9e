"""The push routes' own HTTP handling (they are plain ASGI routes: pushwire/api/raw_http.py):
methods, body sizes with and without Content-Length, the error bodies and the OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator

from pushwire.sdk.server import signed_headers
from tests.api.conftest import Stack

PATHS = ("/api/v1/push", "/api/v1/push/batch")


async def test_other_methods_get_405_with_allow(stack: Stack) -> None:
    async with stack.raw() as http:
        for path in PATHS:
            for method in ("GET", "PUT", "DELETE"):
                r = await http.request(method, path)
                assert r.status_code == 405, (method, path, r.text)
                assert r.json()["error"] == "method_not_allowed" and r.headers["allow"] == "POST"


async def _chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


async def test_a_streamed_body_over_one_mib_is_413_and_publishes_nothing(stack: Stack) -> None:
    key = stack.created.server_key
    for path in PATHS:
        body = b'{"channels":["big"],"event":"e","data":"' + b"x" * (1024 * 1024) + b'"}'
        headers = signed_headers(key.key_id, key.secret, "POST", path, body=body)
        async with stack.raw() as http:
            # No Content-Length: the size is found while reading, and reading stops there.
            r = await http.post(path, content=_chunks(body), headers=headers)
        assert r.status_code == 413 and r.json()["error"] == "payload_too_large", r.text
    async with stack.client() as pw:
        assert (await pw.history("big"))["top"] == 0


async def test_a_streamed_body_under_the_limit_is_accepted(stack: Stack) -> None:
    key = stack.created.server_key
    body = b'{"channels":["chunked"],"event":"e","data":"' + b"y" * 50_000 + b'"}'
    headers = signed_headers(key.key_id, key.secret, "POST", "/api/v1/push", body=body)
    async with stack.raw() as http:
        r = await http.post("/api/v1/push", content=_chunks(body, 7_000), headers=headers)
    assert r.status_code == 202, r.text
    assert r.headers["content-type"] == "application/json"
    assert [d["offset"] for d in r.json()["deliveries"]] == [1]


async def test_unsigned_requests_get_the_spec_error_body(stack: Stack) -> None:
    async with stack.raw() as http:
        for path in PATHS:
            r = await http.post(path, content=b"{}")
            assert r.status_code == 401 and set(r.json()) == {"error", "message"}, r.text


async def test_the_openapi_document_lists_the_push_routes(stack: Stack) -> None:
    async with stack.raw() as http:
        doc = (await http.get("/schema/openapi.json")).json()
    assert doc["paths"]["/api/v1/push"]["post"]["summary"].startswith("Publish one message")
    assert doc["paths"]["/api/v1/push/batch"]["post"]["tags"] == ["server API"]
    assert {"PushBody", "PushAccepted", "BatchBody", "BatchResult"} <= set(doc["components"]["schemas"])
    assert "/health" in doc["paths"]


async def test_a_client_gone_before_its_body_publishes_nothing(stack: Stack) -> None:
    messages = [
        {"type": "http.request", "body": b'{"channels":["gone"],', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/push",
        "raw_path": b"/api/v1/push",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"pushwire.test")],
        "client": ("127.0.0.1", 40000),
        "server": ("pushwire.test", 80),
    }
    await stack.app(scope, receive, send)  # type: ignore[arg-type]
    assert sent[0]["status"] == 400
    async with stack.client() as pw:
        assert (await pw.history("gone"))["top"] == 0
