"""Pusher HTTP API signing: the notes' test vectors (§4.3) with a frozen clock, then every refusal
against real server keys on both backend sets (`live`: the real authenticator, cache and database)."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any
from urllib.parse import urlencode

import pytest

from pushwire.errors import ApiError
from pushwire.pusher.http_auth import PusherRequest, authenticate, parse_query, string_to_sign, verify
from tests.live import LiveServer

# The notes' credentials and clock (§4.3).
SECRET = "7ad3773142a6692b25b8"
KEY = "278d425bdf160c739803"
T = 1353088179


def signed_query(
    method: str,
    path: str,
    key: str,
    secret: str,
    body: bytes = b"",
    params: dict[str, str] | None = None,
    timestamp: int | None = None,
    body_md5: bool | None = None,
) -> str:
    """The query of a request signed as the libraries do (notes §4.2), written independently of
    the server's code. body_md5: None = the Node library's way (only with a body), True = the
    Python library's (always), False = never. Values are URL-encoded as the Python library does."""
    q: dict[str, str] = {
        "auth_key": key,
        "auth_timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "auth_version": "1.0",
        **(params or {}),
    }
    if body_md5 or (body_md5 is None and body):
        q["body_md5"] = hashlib.md5(body).hexdigest()
    to_sign = f"{method}\n{path}\n" + "&".join(f"{k}={q[k]}" for k in sorted(q))
    q["auth_signature"] = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return urlencode(q)


def request(method: str, path: str, query: str, body: bytes = b"", peer: str = "127.0.0.1") -> PusherRequest:
    return PusherRequest(method=method, path=path, params=parse_query(query), body=body, peer=peer, forwarded_for=None)


# -- the notes' vectors --------------------------------------------------------------------------

BODY_A = b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'
QUERY_A = (
    "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0"
    "&body_md5=ec365a775a4cd0599faeb73354201b6f"
    "&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
)
# B1: the Node library (no body_md5 on GET), its query appended raw (a literal comma).
QUERY_B1 = (
    "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0"
    "&filter_by_prefix=presence-&info=user_count"
    "&auth_signature=16819168891cb5dfd72b5c7a5d3d602605b26c6ba1930033b5e2eeeb65010291"
)
# B2: the Python library (body_md5 of the empty body, urlencoded, auth_signature in sorted place).
QUERY_B2 = (
    "auth_key=278d425bdf160c739803"
    "&auth_signature=f3f17c61ae491cc9085db68b22076e9b772e3bcb301659d655153ee3f9782aba"
    "&auth_timestamp=1353088179&auth_version=1.0&body_md5=d41d8cd98f00b204e9800998ecf8427e"
    "&filter_by_prefix=presence-&info=user_count"
)


def test_vector_a_string_to_sign_and_signature() -> None:
    assert hashlib.md5(BODY_A).hexdigest() == "ec365a775a4cd0599faeb73354201b6f"
    req = request("POST", "/apps/3/events", QUERY_A, BODY_A)
    assert string_to_sign("POST", "/apps/3/events", req.params) == (
        "POST\n/apps/3/events\nauth_key=278d425bdf160c739803&auth_timestamp=1353088179"
        "&auth_version=1.0&body_md5=ec365a775a4cd0599faeb73354201b6f"
    )
    verify(SECRET, req, T)
    assert signed_query("POST", "/apps/3/events", KEY, SECRET, BODY_A, timestamp=T) == QUERY_A


@pytest.mark.parametrize("query", [QUERY_B1, QUERY_B2], ids=["B1-node", "B2-python"])
def test_vectors_b_both_library_styles(query: str) -> None:
    verify(SECRET, request("GET", "/apps/3/channels", query), T)


def test_vector_b_signs_the_decoded_values() -> None:
    # info=user_count,subscription_count: a literal comma is signed, whether sent raw or as %2C.
    raw = signed_query(
        "GET", "/apps/3/channels", KEY, SECRET, params={"info": "user_count,subscription_count"}, timestamp=T
    )
    assert "info=user_count%2Csubscription_count" in raw
    verify(SECRET, request("GET", "/apps/3/channels", raw), T)
    verify(SECRET, request("GET", "/apps/3/channels", raw.replace("%2C", ",")), T)


def refusal(secret: str, req: PusherRequest, now: float = T) -> tuple[int, str]:
    with pytest.raises(ApiError) as err:
        verify(secret, req, now)
    return err.value.status, err.value.code


def test_wrong_secret_is_401() -> None:
    assert refusal("0" * 20, request("POST", "/apps/3/events", QUERY_A, BODY_A)) == (401, "bad_signature")


def test_other_path_or_method_is_401() -> None:
    assert refusal(SECRET, request("POST", "/apps/4/events", QUERY_A, BODY_A)) == (401, "bad_signature")
    assert refusal(SECRET, request("PUT", "/apps/3/events", QUERY_A, BODY_A)) == (401, "bad_signature")
    assert refusal(SECRET, request("GET", "/apps/3/channels", QUERY_B1 + "&x=1")) == (401, "bad_signature")


@pytest.mark.parametrize(("skew", "ok"), [(-601, False), (-599, True), (599, True), (601, False)])
def test_the_600_second_window_both_ways(skew: int, ok: bool) -> None:
    # The request was signed at T; the server's clock reads T - skew (signed in its future) or T + skew.
    req = request("POST", "/apps/3/events", QUERY_A, BODY_A)
    if ok:
        verify(SECRET, req, T + skew)
    else:
        assert refusal(SECRET, req, T + skew) == (401, "timestamp_out_of_window")


def test_body_md5_must_match_the_raw_body() -> None:
    # Re-serialised JSON is another body: the Python library's has spaces.
    tampered = BODY_A.replace(b"foo", b"bar")
    assert refusal(SECRET, request("POST", "/apps/3/events", QUERY_A, tampered)) == (401, "bad_body_md5")
    spaced = b'{"name": "foo", "channels": ["project-3"], "data": "{\\"some\\":\\"data\\"}"}'
    assert refusal(SECRET, request("POST", "/apps/3/events", QUERY_A, spaced)) == (401, "bad_body_md5")


def test_a_body_without_body_md5_is_refused() -> None:
    query = signed_query("POST", "/apps/3/events", KEY, SECRET, timestamp=T, body_md5=False)
    assert refusal(SECRET, request("POST", "/apps/3/events", query, BODY_A)) == (401, "bad_body_md5")
    # GET with the empty body's MD5 (Python) and without (Node) were accepted above (B1, B2).


@pytest.mark.parametrize(
    "query",
    [
        "auth_key=k&auth_timestamp=1353088179&auth_version=1.0",  # no signature
        QUERY_A.replace("auth_version=1.0", "auth_version=2.0"),
        QUERY_A.replace("auth_timestamp=1353088179", "auth_timestamp=soon"),
        QUERY_A.replace("auth_signature=da45", "auth_signature=zz45"),
    ],
    ids=["no-signature", "version", "timestamp", "not-hex"],
)
def test_malformed_auth_params_are_401(query: str) -> None:
    assert refusal(SECRET, request("POST", "/apps/3/events", query, BODY_A))[0] == 401


def test_a_parameter_given_twice_is_refused() -> None:
    with pytest.raises(ApiError) as err:
        parse_query(QUERY_B1 + "&INFO=subscription_count")
    assert err.value.status == 401


# -- against real keys, on both backend sets ---------------------------------------------------


def keyed(live: LiveServer, method: str, path: str, body: bytes = b"", key: Any = None, **kw: Any) -> PusherRequest:
    """A request signed with `key` (a KeySecret; default: the live's app's server key)."""
    k = key or live.created.server_key
    query = signed_query(method, path, k.key_id, k.secret, body, **kw)
    return request(method, path, query, body)


async def test_a_real_key_is_admitted_with_its_app(live: LiveServer) -> None:
    app_id = live.created.app_id
    caller = await authenticate(live.runtime.auth, keyed(live, "GET", f"/apps/{app_id}/channels"), app_id, "push")
    assert caller.app_id == app_id and caller.key_id == live.created.server_key.key_id


async def test_frozen_clock_window_with_a_real_key(live: LiveServer) -> None:
    app_id = live.created.app_id
    live.runtime.auth.clock = lambda: float(T)
    for skew, ok in [(-601, False), (-599, True), (599, True), (601, False)]:
        req = keyed(live, "POST", f"/apps/{app_id}/events", b"{}", timestamp=T + skew)
        if ok:
            await authenticate(live.runtime.auth, req, app_id, "push")
        else:
            with pytest.raises(ApiError) as err:
                await authenticate(live.runtime.auth, req, app_id, "push")
            assert (err.value.status, err.value.code) == (401, "timestamp_out_of_window")


async def refused(live: LiveServer, req: PusherRequest, app_id: str | None, scope: str = "push") -> ApiError:
    with pytest.raises(ApiError) as err:
        await authenticate(live.runtime.auth, req, app_id, scope)
    return err.value


async def test_unknown_key_wrong_secret_and_another_apps_key(live: LiveServer) -> None:
    app_id = live.created.app_id
    path = f"/apps/{app_id}/events"
    unknown = request("POST", path, signed_query("POST", path, "sk_nosuchkey", "x" * 32, b"{}"), b"{}")
    assert (await refused(live, unknown, app_id)).code == "unknown_key"
    forged = request("POST", path, signed_query("POST", path, live.created.server_key.key_id, "x" * 32, b"{}"), b"{}")
    assert (await refused(live, forged, app_id)).code == "bad_signature"
    other = await live.new_app()
    # App B's key, correctly signed by B's secret, naming app A: refused as an unknown key.
    err = await refused(live, keyed(live, "POST", path, b"{}", other.server_key), app_id)
    assert (err.status, err.code) == (401, "unknown_key")
    # ... and for its own app it is fine.
    own = f"/apps/{other.app_id}/events"
    assert (
        await authenticate(live.runtime.auth, keyed(live, "POST", own, b"{}", other.server_key), other.app_id, "push")
    ).app_id == other.app_id


async def test_a_replayed_signature_is_refused_but_reads_are_not_replay_checked(live: LiveServer) -> None:
    app_id = live.created.app_id
    req = keyed(live, "POST", f"/apps/{app_id}/events", b'{"n":1}')
    await authenticate(live.runtime.auth, req, app_id, "push")
    err = await refused(live, req, app_id)
    assert (err.status, err.code) == (401, "replayed")
    # A read signed twice in one second (the libraries sign no nonce) is answered both times.
    read = keyed(live, "GET", f"/apps/{app_id}/channels", body_md5=True)
    for _ in range(2):
        await authenticate(live.runtime.auth, read, app_id, "presence:read", replay=False)


async def test_prefixless_path_takes_the_app_of_the_key(live: LiveServer) -> None:
    path = "/users/u1/terminate_connections"
    caller = await authenticate(live.runtime.auth, keyed(live, "POST", path, b"{}"), None, "push")
    assert caller.app_id == live.created.app_id


async def test_scope_allow_list_and_revocation_apply(live: LiveServer) -> None:
    tenancy = live.runtime.tenancy
    app_id = live.created.app_id
    path = f"/apps/{app_id}/events"
    narrow = await tenancy.create_server_key(app_id, live.tenant_id, scopes=["history:read"])
    err = await refused(live, keyed(live, "POST", path, b"{}", narrow), app_id)
    assert (err.status, err.code) == (403, "scope_missing")
    walled = await tenancy.create_server_key(app_id, live.tenant_id, allow_ips=["192.0.2.0/24"])
    err = await refused(live, keyed(live, "POST", path, b"{}", walled), app_id)
    assert (err.status, err.code) == (403, "ip_not_allowed")
    # Revoked after it was used (and so held in process): refused at once.
    key = live.created.server_key
    await authenticate(live.runtime.auth, keyed(live, "POST", path, b'{"a":1}'), app_id, "push")
    await tenancy.revoke_server_key(key.key_id, live.tenant_id)
    err = await refused(live, keyed(live, "POST", path, b'{"a":2}'), app_id)
    assert (err.status, err.code) == (401, "unknown_key")
