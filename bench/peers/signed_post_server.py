"""The limit of the push API: a bare Litestar POST that verifies the same HMAC signature as Pushwire.

    python -m bench.peers.signed_post_server --port P

Same uvicorn options as `pushwire run` (pushwire/cli/server.py: uvloop and httptools by
uvicorn's "auto", access log as Pushwire's setting, proxy headers off, the same log filters) and
the same signature checks as pushwire/tenants/auth.py without any shared state: the key is held
in memory (`KEY_ID` / `SECRET`), the signature is computed and compared with
`pushwire.tenants.signing`, the nonce format and the 300 s timestamp window are checked; no
database, no cache, no nonce store, no rate limit, the body is not parsed.

- `POST /api/v1/push` → 202 `{"id": "...", "deliveries": [], "duplicate": false}`
- `POST /api/v1/push/batch` → 200 with a constant `{"results": [{"status": 202, ...} × 100]}`
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, post

from pushwire.names import NONCE_RE
from pushwire.tenants import signing

KEY_ID = "sk_bench_reference"
SECRET = "bench-reference-secret-0123456789abcdef"
BATCH = 100
_ACCEPTED = b'{"id":"ref","deliveries":[],"duplicate":false}'
_BATCH_RESULT = msgspec.json.encode(
    {"results": [{"status": 202, "id": f"ref{i}", "deliveries": [], "duplicate": False} for i in range(BATCH)]}
)
_UNAUTHORIZED = b'{"error":"bad_signature","message":"signature mismatch"}'


async def _verified(request: Request[Any, Any, Any]) -> bool:
    body = await request.body()
    headers = request.headers
    if headers.get(signing.HEADER_KEY, "") != KEY_ID:
        return False
    nonce = headers.get(signing.HEADER_NONCE, "")
    if NONCE_RE.fullmatch(nonce) is None:
        return False
    timestamp = headers.get(signing.HEADER_TIMESTAMP, "")
    given = headers.get(signing.HEADER_SIGNATURE, "")
    query = signing.canonical_query_from_string(request.scope.get("query_string", b"").decode("latin-1"))
    expected = signing.sign(SECRET, request.method, request.scope["path"], query, timestamp, nonce, body)
    if not signing.signatures_match(expected, given.lower()):
        return False
    try:
        return abs(time.time() - int(timestamp)) <= signing.TIMESTAMP_WINDOW
    except ValueError:
        return False


@post("/api/v1/push", status_code=202)
async def push(request: Request[Any, Any, Any]) -> Response[bytes]:
    if not await _verified(request):
        return Response(_UNAUTHORIZED, status_code=401, media_type="application/json")
    return Response(_ACCEPTED, status_code=202, media_type="application/json")


@post("/api/v1/push/batch", status_code=200)
async def push_batch(request: Request[Any, Any, Any]) -> Response[bytes]:
    if not await _verified(request):
        return Response(_UNAUTHORIZED, status_code=401, media_type="application/json")
    return Response(_BATCH_RESULT, status_code=200, media_type="application/json")


def access_log_setting() -> bool:
    """Pushwire's own access-log setting (its default unless PUSHWIRE_ACCESS_LOG is set), for parity."""
    try:
        from pushwire.settings import load_settings

        return load_settings().access_log
    except Exception:
        from pushwire.settings import Settings

        return Settings().access_log


if __name__ == "__main__":
    import uvicorn

    from pushwire.cli.server import log_config

    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    a = p.parse_args()
    access_log = access_log_setting()
    uvicorn.run(
        Litestar(route_handlers=[push, push_batch], request_max_body_size=1024 * 1024, debug=False),
        host="127.0.0.1",
        port=a.port,
        log_level="warning",
        proxy_headers=False,
        access_log=access_log,
        log_config=log_config(access_log),
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        ws_max_size=64 * 1024,
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
