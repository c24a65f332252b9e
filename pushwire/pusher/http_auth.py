"""Pusher HTTP API request signing (auth_version 1.0), checked against the app's server keys.

A Pusher `key` is one of the app's server key ids and its `secret` that key's secret, so a
request is admitted by the same ServerAuthenticator as the native API (ServerAuthenticator.admit):
the app's stamp is read in the same cache round trip as the replay check, a revoked key is
refused at once on every instance, and the key's IP allow-list and scopes apply as they do there.

The signature is HMAC-SHA256(secret, "METHOD\\npath\\nsorted query"), where the query is every
parameter but auth_signature, keys lower-cased and sorted, values URL-decoded (the libraries sign
the raw values: `info=user_count,subscription_count` with a literal comma). The body is covered
through `body_md5`, which the Python library also sends on GET (the MD5 of the empty body).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

import msgspec

from pushwire.errors import ApiError
from pushwire.tenants.auth import Caller, Cost, ServerAuthenticator
from pushwire.tenants.ip_allow import client_ip
from pushwire.tenants.key_cache import KeyEntry

AUTH_VERSION = "1.0"
# Pusher's documented window, both ways: a request signed more than 600 s from our clock is refused.
WINDOW = 600
# No library sends more than a handful; parse_qsl refuses past this instead of building a huge list.
MAX_PARAMS = 64
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX32 = re.compile(r"[0-9a-f]{32}")


class PusherRequest(msgspec.Struct, frozen=True):
    """What signing covers, read from the ASGI scope."""

    method: str
    path: str  # as the client sent it (still percent-encoded), without the query
    params: Mapping[str, str]  # query parameters: keys lower-cased, values URL-decoded
    body: bytes
    peer: str | None
    forwarded_for: str | None


def refused(code: str, message: str) -> ApiError:
    return ApiError(401, code, message)


def parse_query(raw_query: str) -> dict[str, str]:
    """The query as signed: keys lower-cased, values URL-decoded. A key given twice is refused:
    the signature is defined over a map, so which of the two it covered would be a guess."""
    try:
        pairs = parse_qsl(raw_query, keep_blank_values=True, max_num_fields=MAX_PARAMS)
    except ValueError:
        raise refused("bad_query", f"more than {MAX_PARAMS} query parameters") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        k = key.lower()
        if k in params:
            raise refused("bad_query", f"query parameter {k!r} is given twice")
        params[k] = value
    return params


def read_request(scope: Mapping[str, Any], body: bytes) -> PusherRequest:
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) and raw_path else scope["path"]
    forwarded = None
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            forwarded = value.decode("latin-1")
    client = scope.get("client")
    return PusherRequest(
        method=scope["method"],
        path=path.split("?", 1)[0],
        params=parse_query(scope.get("query_string", b"").decode("latin-1")),
        body=body,
        peer=client[0] if client else None,
        forwarded_for=forwarded,
    )


def string_to_sign(method: str, path: str, params: Mapping[str, str]) -> str:
    query = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "auth_signature")
    return f"{method.upper()}\n{path}\n{query}"


def sign(secret: str, method: str, path: str, params: Mapping[str, str]) -> str:
    return hmac.new(secret.encode(), string_to_sign(method, path, params).encode(), hashlib.sha256).hexdigest()


def timestamp_of(params: Mapping[str, str]) -> int:
    """auth_timestamp as an integer; the libraries send whole seconds (Python: `'%.0f'`)."""
    value = params.get("auth_timestamp", "")
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise refused("missing_auth", "auth_timestamp must be Unix seconds")
    return int(value)


def verify(secret: str, req: PusherRequest, now: float) -> None:
    """Refuse (401) a request `secret` did not sign, whose body is not the one signed, or signed
    more than WINDOW seconds from `now`. Needs no shared state: replays are checked after it."""
    params = req.params
    if params.get("auth_version") != AUTH_VERSION:
        raise refused("missing_auth", f"auth_version must be {AUTH_VERSION}")
    timestamp = timestamp_of(params)
    given = params.get("auth_signature", "").lower()
    if _HEX64.fullmatch(given) is None:
        raise refused("missing_auth", "auth_signature must be 64 hex characters (HMAC-SHA256)")
    expected = sign(secret, req.method, req.path, params)
    if not hmac.compare_digest(expected, given):
        # The path as the client's library wrote it may be the decoded one (it percent-encoded
        # the channel name after signing, or did not): both name the same resource.
        decoded = unquote(req.path)
        if decoded == req.path or not hmac.compare_digest(sign(secret, req.method, decoded, params), given):
            raise refused("bad_signature", "auth_signature does not match the request (check the key's secret)")
    md5 = params.get("body_md5")
    if md5 is not None:
        if _HEX32.fullmatch(md5.lower()) is None or not hmac.compare_digest(
            md5.lower(), hashlib.md5(req.body, usedforsecurity=False).hexdigest()
        ):
            raise refused("bad_body_md5", "body_md5 is not the MD5 of the request body")
    elif req.body:
        raise refused("bad_body_md5", "a request with a body must sign it with body_md5")
    if abs(now - timestamp) > WINDOW:
        raise refused("timestamp_out_of_window", f"auth_timestamp is more than {WINDOW} s from server time")


async def authenticate(
    auth: ServerAuthenticator,
    req: PusherRequest,
    app_id: str | None,
    scope: str,
    cost: Cost = 0,
    replay: bool = True,
) -> Caller:
    """The caller of a signed Pusher request for the app `app_id` (None: the app of its auth_key,
    for the Python library's prefix-less terminate_connections). Every signing failure is a 401;
    then (with `replay`) the same signature again within its window is refused (401), and the
    key's IP allow-list, `scope` and the app's state apply (403) as on the native API.

    Pusher's libraries sign no nonce: two identical requests within one second carry the same
    signature. The reads (GET) are therefore not replay-checked (`replay=False`): a repeated read
    changes nothing, and a client polling /channels would otherwise be refused."""
    key_id = req.params.get("auth_key", "")
    if not key_id:
        raise refused("missing_auth", "auth_key is missing")
    entry = await auth.key_entry(key_id)
    if entry is None:
        raise refused("unknown_key", "unknown or revoked auth_key")
    # Remembered as long as the signature could be accepted: until its timestamp leaves the window.
    # (admit checks the signature before it stores anything: junk never reaches the replay set.)
    ttl = max(1.0, timestamp_of(req.params) + WINDOW - auth.clock() + 1)
    signature = req.params.get("auth_signature", "").lower()
    return await auth.admit(
        entry,
        _checker(auth.clock, req, app_id),
        f"pusher-sig:{entry.key_id}:{signature}" if replay else None,
        ttl,
        client_ip(req.peer, req.forwarded_for, auth.trusted),
        scope,
        cost,
        "this auth_signature was already used; sign each request afresh",
    )


def _checker(clock: Callable[[], float], req: PusherRequest, app_id: str | None) -> Callable[[KeyEntry], None]:
    def check(entry: KeyEntry) -> None:
        if app_id is not None and entry.app.app_id != app_id:
            # The same answer as an unknown key: app B's key learns nothing about app A.
            raise refused("unknown_key", f"auth_key is not a key of app {app_id}")
        verify(entry.secret, req, clock())

    return check
