"""HTTP clients for the signed push API: a hand-written keep-alive HTTP/1.1 client (cheap enough
not to bound the generator: ~0.2 ms of CPU per signed request) and an httpx one."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from typing import Any

from pushwire.tenants import signing


# -- HTTP clients for the signed push API ------------------------------------------------------
class Signer:
    """Header block of a signed POST: one fresh nonce per request (nonces are single-use)."""

    def __init__(self, key_id: str, secret: str) -> None:
        self.key_id = key_id
        self.secret = secret

    def headers(self, path: str, body: bytes) -> dict[str, str]:
        ts = str(int(time.time()))
        nonce = secrets.token_urlsafe(18)
        sig = signing.sign(self.secret, "POST", path, "", ts, nonce, body)
        return {
            "Content-Type": "application/json",
            signing.HEADER_KEY: self.key_id,
            signing.HEADER_TIMESTAMP: ts,
            signing.HEADER_NONCE: nonce,
            signing.HEADER_SIGNATURE: sig,
        }


class RawHttp:
    """One HTTP/1.1 keep-alive connection; requests are written by hand, responses need Content-Length."""

    def __init__(self, port: int, signer: Signer) -> None:
        self.port = port
        self.signer = signer
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        # A kept-alive connection the server closed while idle (uvicorn: 5 s) fails on first use:
        # retry once on a new connection, as HTTP clients do for idempotent-safe reuse failures.
        for attempt in (0, 1):
            reused = self.writer is not None
            if self.writer is None:
                try:
                    await self._connect()
                except OSError:
                    return 0, b""
            assert self.reader is not None and self.writer is not None
            hdrs = "".join(f"{k}: {v}\r\n" for k, v in self.signer.headers(path, body).items())
            self.writer.write(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Length: {len(body)}\r\n{hdrs}\r\n".encode()
                + body
            )
            try:
                head = await self.reader.readuntil(b"\r\n\r\n")
                break
            except (asyncio.IncompleteReadError, ConnectionError):
                await self.aclose()
                if not reused or attempt:
                    return 0, b""
        status = int(head[9:12])
        lower = head.lower()
        i = lower.find(b"content-length:")
        length = int(lower[i + 15 : lower.index(b"\r\n", i)]) if i >= 0 else 0
        data = await self.reader.readexactly(length) if length else b""
        if b"connection: close" in lower:
            await self.aclose()
        return status, data

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


class HttpxPoster:
    """The same interface over a shared httpx.AsyncClient (HTTP/1.1 keep-alive pool)."""

    def __init__(self, client: Any, signer: Signer) -> None:
        self.client = client
        self.signer = signer

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        import httpx

        try:
            r = await self.client.post(path, content=body, headers=self.signer.headers(path, body))
        except httpx.HTTPError:
            return 0, b""
        return r.status_code, r.content

    async def aclose(self) -> None: ...


@contextlib.asynccontextmanager
async def posters(kind: str, port: int, signer: Signer, n: int) -> Any:
    """n posters: `raw` (own connection each) or `httpx` (one client, pool of n connections)."""
    if kind == "raw":
        conns = [RawHttp(port, signer) for _ in range(n)]
        try:
            yield conns
        finally:
            for c in conns:
                await c.aclose()
    elif kind == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30) as client:
            yield [HttpxPoster(client, signer) for _ in range(n)]
    else:
        raise SystemExit(f"unknown HTTP client {kind!r} (raw, httpx)")
