"""Server API client for tenant backends: signs every request (spec section 2).

async with AsyncServerClient("https://push.example.com", key_id, secret) as pw:
    await pw.push(channels=["room.lobby"], event="chat.message", data={"text": "hi"})
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec

from pushwire.tenants.signing import (
    HEADER_KEY,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    canonical_query,
    sign,
)


class PushwireError(Exception):
    def __init__(self, status: int, code: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body or {}
        self.retry_after: str | None = None


def signed_headers(
    key_id: str,
    secret: str,
    method: str,
    path: str,
    query: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_urlsafe(18)
    signature = sign(secret, method, path, canonical_query(query), ts, nonce, body)
    return {HEADER_KEY: key_id, HEADER_TIMESTAMP: ts, HEADER_NONCE: nonce, HEADER_SIGNATURE: signature}


def push_body(
    *,
    event: str,
    data: Any,
    channels: Sequence[str] | None = None,
    users: Sequence[str] | None = None,
    broadcast: bool = False,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"event": event, "data": data}
    if channels is not None:
        body["channels"] = list(channels)
    if users is not None:
        body["users"] = list(users)
    if broadcast:
        body["broadcast"] = True
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    return body


class _Signer:
    def __init__(self, key_id: str, secret: str) -> None:
        self.key_id = key_id
        self.secret = secret

    def build(
        self, method: str, path: str, query: Sequence[tuple[str, str]], json_body: Any
    ) -> tuple[str, bytes, dict[str, str]]:
        body = b"" if json_body is None else msgspec.json.encode(json_body)
        headers = signed_headers(self.key_id, self.secret, method, path, query, body)
        if json_body is not None:
            headers["Content-Type"] = "application/json"
        url = path + ("?" + urlencode(list(query)) if query else "")
        return url, body, headers


def _result(response: httpx.Response) -> Any:
    data = response.json() if response.content else {}
    if response.status_code >= 400:
        err = PushwireError(response.status_code, data.get("error", "error"), data.get("message", ""), data)
        err.retry_after = response.headers.get("Retry-After")
        raise err
    return data


class AsyncServerClient:
    def __init__(
        self,
        base_url: str,
        key_id: str,
        secret: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._signer = _Signer(key_id, secret)
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncServerClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, query: Sequence[tuple[str, str]] = (), json: Any = None) -> Any:
        url, body, headers = self._signer.build(method, path, query, json)
        return _result(await self._http.request(method, url, content=body, headers=headers))

    async def push(self, **kwargs: Any) -> dict[str, Any]:
        return await self.request("POST", "/api/v1/push", json=push_body(**kwargs))  # type: ignore[no-any-return]

    async def push_batch(self, messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return await self.request("POST", "/api/v1/push/batch", json={"messages": list(messages)})  # type: ignore[no-any-return]

    async def presence(self, user_id: str) -> dict[str, Any]:
        return await self.request("GET", f"/api/v1/presence/{user_id}")  # type: ignore[no-any-return]

    async def presence_many(self, user_ids: Sequence[str]) -> dict[str, Any]:
        return await self.request("GET", "/api/v1/presence", [("user", u) for u in user_ids])  # type: ignore[no-any-return]

    async def history(self, channel: str, after: int = 0, limit: int = 100) -> dict[str, Any]:
        q = [("after", str(after)), ("limit", str(limit))]
        return await self.request("GET", f"/api/v1/channels/{channel}/history", q)  # type: ignore[no-any-return]


class ServerClient:
    """The same API, blocking: for scripts and synchronous web frameworks."""

    def __init__(self, base_url: str, key_id: str, secret: str, *, timeout: float = 10.0) -> None:
        self._signer = _Signer(key_id, secret)
        self._http = httpx.Client(base_url=base_url, timeout=timeout)

    def __enter__(self) -> ServerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def request(self, method: str, path: str, query: Sequence[tuple[str, str]] = (), json: Any = None) -> Any:
        url, body, headers = self._signer.build(method, path, query, json)
        return _result(self._http.request(method, url, content=body, headers=headers))

    def push(self, **kwargs: Any) -> dict[str, Any]:
        return self.request("POST", "/api/v1/push", json=push_body(**kwargs))  # type: ignore[no-any-return]

    def push_batch(self, messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return self.request("POST", "/api/v1/push/batch", json={"messages": list(messages)})  # type: ignore[no-any-return]

    def presence(self, user_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/v1/presence/{user_id}")  # type: ignore[no-any-return]

    def history(self, channel: str, after: int = 0, limit: int = 100) -> dict[str, Any]:
        q = [("after", str(after)), ("limit", str(limit))]
        return self.request("GET", f"/api/v1/channels/{channel}/history", q)  # type: ignore[no-any-return]
