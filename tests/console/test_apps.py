"""Apps, settings, server and client keys, and the try-it panel."""

from __future__ import annotations

import re

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pushwire.sdk import AsyncServerClient
from pushwire.sdk.server import PushwireError
from pushwire.tenants.views import AppLimits
from tests.console.conftest import Console

_SECRET = re.compile(r'<code id="[^"]+" class="mono">([^<]+)</code>')


def _sdk(console: Console, key_id: str, secret: str) -> AsyncServerClient:
    import httpx

    return AsyncServerClient(
        "http://pushwire.test",
        key_id,
        secret,
        transport=httpx.ASGITransport(app=console.app, client=("127.0.0.1", 40000)),
    )


async def test_create_app_shows_its_secrets_once(console: Console) -> None:
    b = await console.as_user("admin_a")
    response = await b.post(
        "/console/apps", {"name": "mobile", "origins": "https://m.example.com", "tenant_id": console.tenant_b}
    )  # ignored for a tenant admin
    assert response.status_code == 200, response.text
    apps = {a.name: a for a in await console.runtime.tenancy.list_apps(console.tenant_a)}
    assert apps["mobile"].allowed_origins == ["https://m.example.com"]
    assert not [a for a in await console.runtime.tenancy.list_apps(console.tenant_b) if a.name == "mobile"]
    secrets = _SECRET.findall(response.text)
    assert len(secrets) == 2 and "shown only once" in response.text
    page = await b.get(f"/console/apps/{apps['mobile'].app_id}")
    assert page.status_code == 200 and all(s not in page.text for s in secrets)
    dup = await b.post("/console/apps", {"name": "mobile"})
    assert dup.status_code == 422 and "already has an app named" in dup.text


async def test_server_key_secret_is_shown_once_and_works(console: Console) -> None:
    b = await console.as_user("admin_a")
    app_id = console.app_a.app_id
    response = await b.post(
        f"/console/apps/{app_id}/server-keys", {"label": "backend", "scopes": ["push", "history:read"], "allow_ips": ""}
    )
    assert response.status_code == 200, response.text
    assert response.text.lstrip().startswith('<section class="card" id="server-keys">')  # the fragment
    (secret,) = _SECRET.findall(response.text)
    key = next(k for k in await console.runtime.tenancy.list_server_keys(app_id, None) if k.label == "backend")
    assert key.scopes == ["push", "history:read"] and key.key_id in response.text
    for path in (f"/console/apps/{app_id}", f"/console/apps/{app_id}/server-keys"):
        listing = await b.get(path, hx=path.endswith("keys"))
        assert key.key_id in listing.text and secret not in listing.text
    async with _sdk(console, key.key_id, secret) as sdk:
        accepted = await sdk.push(users=["u1"], event="hello", data={"a": 1})
    assert accepted["id"]


async def test_plain_form_post_gets_a_whole_page(console: Console) -> None:
    b = await console.as_user("admin_a")
    app_id = console.app_a.app_id
    response = await b.post(f"/console/apps/{app_id}/server-keys", {"label": "nojs", "scopes": "push"}, hx=False)
    assert response.status_code == 200 and response.text.startswith("<!doctype html>")
    assert len(_SECRET.findall(response.text)) == 1 and f'href="/console/apps/{app_id}"' in response.text


async def test_revoke_and_rotate_server_keys(console: Console) -> None:
    b = await console.as_user("admin_a")
    app_id = console.app_a.app_id
    key = console.app_a.server_key
    rotated = await b.post(f"/console/apps/{app_id}/server-keys/{key.key_id}/rotate")
    assert rotated.status_code == 200 and "rotated" in rotated.text
    (new_secret,) = _SECRET.findall(rotated.text)
    keys = {k.key_id: k for k in await console.runtime.tenancy.list_server_keys(app_id, None)}
    assert keys[key.key_id].revoked_at is not None
    new = next(k for k in keys.values() if k.revoked_at is None)
    assert new.scopes == keys[key.key_id].scopes and new.label == "default"
    async with _sdk(console, key.key_id, key.secret) as sdk:
        with pytest.raises(PushwireError) as refused:
            await sdk.push(users=["u1"], event="hello", data={})
    assert refused.value.status == 401
    revoked = await b.post(f"/console/apps/{app_id}/server-keys/{new.key_id}/revoke")
    assert revoked.status_code == 200 and f"Key {new.key_id} revoked" in revoked.text
    assert new_secret not in revoked.text
    assert all(k.revoked_at for k in await console.runtime.tenancy.list_server_keys(app_id, None))
    again = await b.post(f"/console/apps/{app_id}/server-keys/{new.key_id}/rotate")
    assert again.status_code == 422 and "already revoked" in again.text


async def test_client_keys_hs256_and_pem(console: Console) -> None:
    b = await console.as_user("admin_a")
    app_id = console.app_a.app_id
    hs = await b.post(f"/console/apps/{app_id}/client-keys", {"kind": "hs256"})
    assert hs.status_code == 200 and len(_SECRET.findall(hs.text)) == 1
    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    rs = await b.post(f"/console/apps/{app_id}/client-keys", {"kind": "pem", "public_key": pem})
    assert rs.status_code == 200 and not _SECRET.findall(rs.text) and "RS256" in rs.text
    bad = await b.post(f"/console/apps/{app_id}/client-keys", {"kind": "pem", "public_key": "nonsense"})
    assert bad.status_code == 422 and "not a PEM public key" in bad.text
    keys = await console.runtime.tenancy.list_client_keys(app_id, None)
    assert sorted(k.alg for k in keys) == ["HS256", "HS256", "RS256"]
    rs_kid = next(k.kid for k in keys if k.alg == "RS256")
    revoked = await b.post(f"/console/apps/{app_id}/client-keys/{rs_kid}/revoke")
    assert revoked.status_code == 200 and f"Client key {rs_kid} revoked" in revoked.text
    assert next(k for k in await console.runtime.tenancy.list_client_keys(app_id, None) if k.kid == rs_kid).revoked_at


async def test_settings_edit_and_errors(console: Console) -> None:
    b = await console.as_user("admin_a")
    app_id = console.app_a.app_id
    response = await b.post(
        f"/console/apps/{app_id}/settings",
        {"origins": "https://a.example.com\nhttps://b.example.com/", "push_rate": "50", "retention_days": "7"},
    )  # no `enabled`: the checkbox is unticked
    assert response.status_code == 200 and "Settings saved" in response.text
    app = await console.runtime.tenancy.get_app(app_id, None)
    assert not app.enabled and app.allowed_origins == ["https://a.example.com", "https://b.example.com"]
    assert app.limits.push_rate == 50 and app.limits.retention_days == 7 and app.limits.push_burst == 2000
    bad = await b.post(f"/console/apps/{app_id}/settings", {"enabled": "1", "origins": "not-an-origin"})
    assert bad.status_code == 422 and "is not an origin" in bad.text
    assert bad.headers["hx-retarget"] == "#console-error"
    zero = await b.post(f"/console/apps/{app_id}/settings", {"enabled": "1", "push_rate": "0"})
    assert zero.status_code == 422 and "between" in zero.text
    assert not (await console.runtime.tenancy.get_app(app_id, None)).enabled


async def test_try_it_token_and_push(console: Console) -> None:
    b = await console.as_user("admin_a")
    app_id = console.app_a.app_id
    minted = await b.post(f"/console/apps/{app_id}/try/token", {"user_id": "u1", "ttl": "600", "channels": "room.a"})
    assert minted.status_code == 200, minted.text
    (token,) = _SECRET.findall(minted.text)
    claims = jwt.decode(token, console.app_a.client_key.secret, algorithms=["HS256"])
    assert claims["sub"] == "u1" and claims["app"] == app_id and claims["channels"] == ["room.a"]
    assert claims["exp"] - claims["iat"] == 600
    bad_user = await b.post(f"/console/apps/{app_id}/try/token", {"user_id": "no spaces"})
    assert bad_user.status_code == 422

    pushed = await b.post(
        f"/console/apps/{app_id}/try/push",
        {"target_kind": "user", "target": "u1", "event": "demo.hi", "data": '{"text": "hi"}'},
    )
    assert pushed.status_code == 200, pushed.text
    page = await console.runtime.history.read(app_id, "user.u1", 0, 10)
    assert [m.event for m in page.messages] == ["demo.hi"] and page.messages[0].id in pushed.text
    assert bytes(page.messages[0].data) == b'{"text":"hi"}'  # stored compact, as every push's data
    chan = await b.post(f"/console/apps/{app_id}/try/push", {"target_kind": "channel", "target": "room.a"})
    assert chan.status_code == 200
    assert [m.event for m in (await console.runtime.history.read(app_id, "room.a", 0, 10)).messages] == ["console.test"]
    not_json = await b.post(f"/console/apps/{app_id}/try/push", {"target": "u1", "data": "{oops"})
    assert not_json.status_code == 422 and "data must be JSON" in not_json.text
    bad_channel = await b.post(f"/console/apps/{app_id}/try/push", {"target_kind": "channel", "target": "a/b"})
    assert bad_channel.status_code == 422 and "invalid channel name" in bad_channel.text


async def test_limits_over_the_maxima_are_a_form_error(console: Console) -> None:
    app_id = console.app_a.app_id
    maxima = console.runtime.settings.limit_maxima
    for who in ("admin_a", "operator"):
        b = await console.as_user(who)
        for field, value in (
            ("push_rate", "2000000000"),
            ("max_connections", "2000000000"),
            ("hot_history_size", "2000000000"),
            ("retention_days", "1000000"),
        ):
            bad = await b.post(f"/console/apps/{app_id}/settings", {"enabled": "1", field: value})
            assert bad.status_code == 422, (who, field, bad.text)
            assert f"between 1 and {getattr(maxima, field)}" in bad.text and "platform maximum" in bad.text
        for value in ("1.5", "abc", "-3"):
            bad = await b.post(f"/console/apps/{app_id}/settings", {"enabled": "1", "push_rate": value})
            assert bad.status_code == 422 and ("whole number" in bad.text or "between 1 and" in bad.text)
    assert (await console.runtime.tenancy.get_app(app_id, None)).limits == AppLimits()
    # Without JavaScript the settings form comes back with the message and the values typed.
    b = await console.as_user("admin_a")
    page = await b.post(f"/console/apps/{app_id}/settings", {"enabled": "1", "retention_days": "1000000"}, hx=False)
    assert page.status_code == 422 and page.text.startswith("<!doctype html>")
    assert "Not saved:" in page.text and 'name="retention_days" min="1" value="1000000"' in page.text


async def test_only_operators_raise_limits(console: Console) -> None:
    app_id = console.app_a.app_id
    admin = await console.as_user("admin_a")
    lowered = await admin.post(f"/console/apps/{app_id}/settings", {"enabled": "1", "push_rate": "500"})
    assert lowered.status_code == 200 and "Settings saved" in lowered.text
    assert "only an operator can raise one" in lowered.text  # the hint beside the form
    kept = await admin.post(f"/console/apps/{app_id}/settings", {"enabled": "1", "push_rate": "500"})
    assert kept.status_code == 200 and "Nothing changed" in kept.text
    raised = await admin.post(f"/console/apps/{app_id}/settings", {"enabled": "1", "push_rate": "5000"})
    assert raised.status_code == 422 and "only an operator can raise a limit" in raised.text
    assert (await console.runtime.tenancy.get_app(app_id, None)).limits.push_rate == 500
    operator = await console.as_user("operator")
    ok = await operator.post(f"/console/apps/{app_id}/settings", {"enabled": "1", "push_rate": "5000"})
    assert ok.status_code == 200 and "Settings saved" in ok.text
    assert (await console.runtime.tenancy.get_app(app_id, None)).limits.push_rate == 5000


async def test_app_page_shows_how_to_use_pusher_libraries(console: Console) -> None:
    """The Pusher section names this app's id and a live server key (never a secret), and the host
    the page was reached on; a revoked key is not offered."""
    b = await console.as_user("admin_a")
    app_id = console.app_a.app_id
    keys = await console.runtime.tenancy.list_server_keys(app_id, None)
    live = [k for k in keys if k.revoked_at is None]
    page = await b.get(f"/console/apps/{app_id}")
    section = page.text[page.text.index('id="pusher"') :]
    assert "Use with Pusher libraries" in section and f'appId: "{app_id}"' in section
    assert f'new Pusher("{live[0].key_id}"' in section
    await console.runtime.tenancy.revoke_server_key(live[0].key_id, console.tenant_a)
    page = await b.get(f"/console/apps/{app_id}")
    section = page.text[page.text.index('id="pusher"') :]
    assert f'new Pusher("{live[0].key_id}"' not in section
