"""Every refusal of the signed API, in the spec's order, with its status and code; the server keeps serving."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest

from pushwire.sdk.server import signed_headers
from pushwire.tenants.changes import cache_stamper
from pushwire.tenants.service import TenancyService
from tests.api.conftest import Stack

PATH = "/api/v1/push"
BODY = b'{"channels":["a"],"event":"e","data":1}'


def _headers(stack: Stack, **kw: object) -> dict[str, str]:
    key = stack.created.server_key
    return signed_headers(key.key_id, key.secret, "POST", PATH, body=BODY, **kw)  # type: ignore[arg-type]


async def _post(stack: Stack, headers: dict[str, str], body: bytes = BODY, peer: str = "127.0.0.1") -> tuple[int, dict]:  # type: ignore[type-arg]
    async with stack.raw(peer) as http:
        r = await http.post(PATH, content=body, headers=headers)
        return r.status_code, r.json()


async def _still_serving(stack: Stack) -> None:
    status, body = await _post(stack, _headers(stack))
    assert status == 202, body


async def test_signed_request_is_accepted(stack: Stack) -> None:
    await _still_serving(stack)


async def test_unknown_key(stack: Stack) -> None:
    h = _headers(stack)
    h["X-Pushwire-Key"] = "sk_doesnotexist"
    assert await _post(stack, h) == (401, {"error": "unknown_key", "message": "unknown or revoked key"})
    await _still_serving(stack)


async def test_revoked_key_refused_on_next_request(stack: Stack) -> None:
    extra = await stack.runtime.tenancy.create_server_key(stack.created.app_id, stack.tenant_id)
    h = signed_headers(extra.key_id, extra.secret, "POST", PATH, body=BODY)
    assert (await _post(stack, h))[0] == 202
    await stack.runtime.tenancy.revoke_server_key(extra.key_id, stack.tenant_id)
    h = signed_headers(extra.key_id, extra.secret, "POST", PATH, body=BODY)
    status, body = await _post(stack, h)
    assert (status, body["error"]) == (401, "unknown_key")
    await _still_serving(stack)  # the other key (rotation) keeps working


async def test_bad_signature(stack: Stack) -> None:
    h = _headers(stack)
    h["X-Pushwire-Signature"] = "0" * 64
    status, body = await _post(stack, h)
    assert (status, body["error"]) == (401, "bad_signature")


async def test_wrong_secret(stack: Stack) -> None:
    h = signed_headers(stack.created.server_key.key_id, "not-the-secret", "POST", PATH, body=BODY)
    assert (await _post(stack, h))[1]["error"] == "bad_signature"


async def test_body_changed_after_signing(stack: Stack) -> None:
    status, body = await _post(stack, _headers(stack), body=BODY.replace(b"1}", b"2}"))
    assert (status, body["error"]) == (401, "bad_signature")


async def test_query_changed_after_signing(stack: Stack) -> None:
    key = stack.created.server_key
    h = signed_headers(key.key_id, key.secret, "GET", "/api/v1/channels/a/history", [("after", "0")])
    async with stack.raw() as http:
        r = await http.get("/api/v1/channels/a/history?after=1", headers=h)
    assert (r.status_code, r.json()["error"]) == (401, "bad_signature")


# Just outside the 300 s window: 2 s beyond it, since a whole-second timestamp is up to 1 s
# off the server's clock (int() of now + 301 was inside the window when it ran late in a second).
@pytest.mark.parametrize("skew", [302, -302])
async def test_timestamp_out_of_window(stack: Stack, skew: int) -> None:
    status, body = await _post(stack, _headers(stack, timestamp=int(time.time()) + skew))
    assert (status, body["error"]) == (401, "timestamp_out_of_window")


async def test_timestamp_at_edge_is_accepted(stack: Stack) -> None:
    assert (await _post(stack, _headers(stack, timestamp=int(time.time()) - 290)))[0] == 202


async def test_replayed_nonce(stack: Stack) -> None:
    h = _headers(stack, nonce="abcdefghijklmnop-replay")
    assert (await _post(stack, h))[0] == 202
    status, body = await _post(stack, h)
    assert (status, body["error"]) == (401, "replayed")
    assert (await stack.client().history("a"))["top"] == 1  # the replay published nothing


@pytest.mark.parametrize("nonce", ["short", "x" * 65, "has space in it!!", "ünïcödé-nonce-xxxx"])
async def test_nonce_of_wrong_shape(stack: Stack, nonce: str) -> None:
    h = _headers(stack)
    h["X-Pushwire-Nonce"] = nonce.encode()  # type: ignore[assignment]  # raw bytes: httpx sends non-ASCII as is
    status, body = await _post(stack, h)
    assert (status, body["error"]) == (401, "bad_nonce")


async def test_ip_allow_list_and_spoofed_forwarded_for(stack: Stack) -> None:
    key = await stack.runtime.tenancy.create_server_key(
        stack.created.app_id, stack.tenant_id, allow_ips=["203.0.113.0/24", "2001:db8::/32"]
    )

    def h(extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**signed_headers(key.key_id, key.secret, "POST", PATH, body=BODY), **(extra or {})}

    assert (await _post(stack, h(), peer="203.0.113.7"))[0] == 202
    assert (await _post(stack, h(), peer="2001:db8::1"))[0] == 202
    status, body = await _post(stack, h(), peer="198.51.100.1")
    assert (status, body["error"]) == (403, "ip_not_allowed")
    # An untrusted peer cannot claim an allowed address through X-Forwarded-For.
    status, body = await _post(stack, h({"X-Forwarded-For": "203.0.113.7"}), peer="198.51.100.1")
    assert (status, body["error"]) == (403, "ip_not_allowed")
    # A trusted proxy's header is believed, right to left: the client-supplied left part is ignored.
    assert (await _post(stack, h({"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}), peer="10.9.0.2"))[0] == 202
    status, body = await _post(stack, h({"X-Forwarded-For": "203.0.113.7, 198.51.100.1"}), peer="10.9.0.2")
    assert (status, body["error"]) == (403, "ip_not_allowed")


async def test_missing_scope(stack: Stack) -> None:
    key = await stack.runtime.tenancy.create_server_key(stack.created.app_id, stack.tenant_id, scopes=["history:read"])
    status, body = await _post(stack, signed_headers(key.key_id, key.secret, "POST", PATH, body=BODY))
    assert (status, body["error"]) == (403, "scope_missing")
    h = signed_headers(key.key_id, key.secret, "GET", "/api/v1/presence/u1")
    async with stack.raw() as http:
        r = await http.get("/api/v1/presence/u1", headers=h)
    assert (r.status_code, r.json()["error"]) == (403, "scope_missing")


async def test_disabled_app(stack: Stack) -> None:
    await stack.runtime.tenancy.update_app(stack.created.app_id, stack.tenant_id, enabled=False)
    status, body = await _post(stack, _headers(stack))
    assert (status, body["error"]) == (403, "app_disabled")
    await stack.runtime.tenancy.update_app(stack.created.app_id, stack.tenant_id, enabled=True)
    await _still_serving(stack)


async def test_checks_run_in_spec_order(stack: Stack) -> None:
    """A request wrong in several ways gets the earliest check's error."""
    h = _headers(stack, timestamp=int(time.time()) - 1000)
    h["X-Pushwire-Signature"] = "f" * 64
    assert (await _post(stack, h))[1]["error"] == "bad_signature"  # signature before timestamp


async def test_unsigned_request(stack: Stack) -> None:
    async with stack.raw() as http:
        r = await http.post(PATH, content=BODY)
    assert (r.status_code, r.json()["error"]) == (401, "unknown_key")


async def test_key_rows_are_read_once_not_per_request(stack: Stack) -> None:
    """The hot path reads no database row: after a key's first request, the next ones are served
    from the in-process key cache (the stamp read with the nonce says it is current)."""
    await _still_serving(stack)
    loads = stack.runtime.auth.keys.loads
    for _ in range(5):
        await _still_serving(stack)
    assert stack.runtime.auth.keys.loads == loads


async def test_app_disabled_and_limits_lowered_apply_on_next_request(stack: Stack) -> None:
    await _still_serving(stack)  # cached
    tenancy, app_id = stack.runtime.tenancy, stack.created.app_id
    await tenancy.update_app(app_id, stack.tenant_id, enabled=False)
    status, body = await _post(stack, _headers(stack))
    assert (status, body["error"]) == (403, "app_disabled")
    await tenancy.update_app(app_id, None, enabled=True)
    await _still_serving(stack)
    limits = (await tenancy.get_app(app_id, None)).limits
    await tenancy.update_app(app_id, stack.tenant_id, limits=msgspec.structs.replace(limits, push_rate=1, push_burst=1))
    # The request that finds the change was charged with the nonce under the old limits; the next
    # one takes the new burst's single token, and then none is left at 1/s.
    answers = [await _post(stack, _headers(stack)) for _ in range(3)]
    assert [status for status, _ in answers] == [202, 202, 429], answers
    assert answers[2][1]["error"] == "rate_limited"


async def test_a_change_made_by_another_process(stack: Stack) -> None:
    """Another process (the CLI) changes the database. On Redis it restamps the app there (what
    the CLI's Announcer does), so the next request is refused at once; the single node's memory
    cache lives in the server's process and cannot be restamped, so entries there are reloaded
    after 1 s."""
    extra = await stack.runtime.tenancy.create_server_key(stack.created.app_id, stack.tenant_id)
    h = signed_headers(extra.key_id, extra.secret, "POST", PATH, body=BODY)
    assert (await _post(stack, h))[0] == 202
    shared = stack.runtime.backends.cache.shared
    other = TenancyService(
        stack.runtime.tenancy.db,
        stack.runtime.box,
        on_change=cache_stamper(stack.runtime.backends.cache) if shared else None,
    )
    await other.revoke_server_key(extra.key_id, None)
    if not shared:
        assert stack.runtime.auth.keys.max_age == 1.0
        await asyncio.sleep(1.2)
    status, body = await _post(stack, signed_headers(extra.key_id, extra.secret, "POST", PATH, body=BODY))
    assert (status, body["error"]) == (401, "unknown_key")
