"""Server keys (create, rotate, revoke) and client keys (HS256 or a public key PEM; revoke) of one app.

Secrets appear once, in the response to the request that made them; lists never show them.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from pushwire.console.auth import ConsoleSession
from pushwire.console.pages.common import Form, audit, page_or_fragment
from pushwire.runtime import Runtime
from pushwire.tenants.service import Invalid, NotFound
from pushwire.tenants.views import SCOPES, ServerKeyView

Ctx = dict[str, Any]


async def _server_ctx(runtime: Runtime, session: ConsoleSession, app_id: str, **extra: Any) -> Ctx:
    app = await runtime.tenancy.get_app(app_id, session.scope)
    keys = await runtime.tenancy.list_server_keys(app_id, session.scope)
    return {"app": app, "server_keys": keys, "scopes": SCOPES, **extra}


async def _client_ctx(runtime: Runtime, session: ConsoleSession, app_id: str, **extra: Any) -> Ctx:
    app = await runtime.tenancy.get_app(app_id, session.scope)
    return {"app": app, "client_keys": await runtime.tenancy.list_client_keys(app_id, session.scope), **extra}


async def _server_key(runtime: Runtime, session: ConsoleSession, app_id: str, key_id: str) -> ServerKeyView:
    """The key only when it belongs to this app *and* the app is in the user's scope."""
    for key in await runtime.tenancy.list_server_keys(app_id, session.scope):
        if key.key_id == key_id:
            return key
    raise NotFound(key_id)


def _server_keys(request: Request[Any, Any, Any], ctx: Ctx) -> Response[Any]:
    app_id = ctx["app"].app_id
    return page_or_fragment(request, "_server_keys.html", title="Server keys", back=f"/console/apps/{app_id}", **ctx)


def _client_keys(request: Request[Any, Any, Any], ctx: Ctx) -> Response[Any]:
    app_id = ctx["app"].app_id
    return page_or_fragment(request, "_client_keys.html", title="Client keys", back=f"/console/apps/{app_id}", **ctx)


@get("/apps/{app_id:str}/server-keys")
async def server_keys(
    request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession, app_id: str
) -> Response[Any]:
    return _server_keys(request, await _server_ctx(runtime, session, app_id))


@post("/apps/{app_id:str}/server-keys", status_code=200)
async def create_server_key(
    request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession, app_id: str
) -> Response[Any]:
    app = await runtime.tenancy.get_app(app_id, session.scope)
    form = await Form.read(request)
    scopes = form.values("scopes")
    if not scopes:
        raise Invalid("choose at least one scope")
    label = form.text("label")
    secret = await runtime.tenancy.create_server_key(app_id, session.scope, scopes, form.words("allow_ips"), label)
    await audit(runtime).record(
        session.email,
        "server_key.create",
        tenant_id=app.tenant_id,
        app_id=app_id,
        target=secret.key_id,
        details={"label": label, "scopes": scopes, "allow_ips": form.words("allow_ips")},
    )
    return _server_keys(request, await _server_ctx(runtime, session, app_id, created=secret))


@post("/apps/{app_id:str}/server-keys/{key_id:str}/revoke", status_code=200)
async def revoke_server_key(
    request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession, app_id: str, key_id: str
) -> Response[Any]:
    app = await runtime.tenancy.get_app(app_id, session.scope)
    await _server_key(runtime, session, app_id, key_id)
    await runtime.tenancy.revoke_server_key(key_id, session.scope)
    await audit(runtime).record(
        session.email, "server_key.revoke", tenant_id=app.tenant_id, app_id=app_id, target=key_id
    )
    return _server_keys(request, await _server_ctx(runtime, session, app_id, notice=f"Key {key_id} revoked."))


@post("/apps/{app_id:str}/server-keys/{key_id:str}/rotate", status_code=200)
async def rotate_server_key(
    request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession, app_id: str, key_id: str
) -> Response[Any]:
    """A new key with the old one's label, scopes and IP allow-list; the old one is revoked at once."""
    app = await runtime.tenancy.get_app(app_id, session.scope)
    old = await _server_key(runtime, session, app_id, key_id)
    if old.revoked_at is not None:
        raise Invalid("this key is already revoked; create a new one instead")
    secret = await runtime.tenancy.create_server_key(app_id, session.scope, old.scopes, old.allow_ips, old.label)
    await runtime.tenancy.revoke_server_key(key_id, session.scope)
    await audit(runtime).record(
        session.email,
        "server_key.rotate",
        tenant_id=app.tenant_id,
        app_id=app_id,
        target=key_id,
        details={"replaced_by": secret.key_id},
    )
    return _server_keys(request, await _server_ctx(runtime, session, app_id, created=secret, rotated=key_id))


@get("/apps/{app_id:str}/client-keys")
async def client_keys(
    request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession, app_id: str
) -> Response[Any]:
    return _client_keys(request, await _client_ctx(runtime, session, app_id))


@post("/apps/{app_id:str}/client-keys", status_code=200)
async def create_client_key(
    request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession, app_id: str
) -> Response[Any]:
    app = await runtime.tenancy.get_app(app_id, session.scope)
    form = await Form.read(request)
    kind = form.text("kind", "hs256")
    pem = form.raw("public_key").strip() if kind == "pem" else None
    if kind == "pem" and not pem:
        raise Invalid("paste a public key PEM (-----BEGIN PUBLIC KEY-----)")
    if kind not in ("hs256", "pem"):
        raise Invalid("choose HS256 or a public key")
    created = await runtime.tenancy.create_client_key(app_id, session.scope, pem)
    await audit(runtime).record(
        session.email,
        "client_key.create",
        tenant_id=app.tenant_id,
        app_id=app_id,
        target=created.kid,
        details={"kind": kind},
    )
    return _client_keys(request, await _client_ctx(runtime, session, app_id, created=created))


@post("/apps/{app_id:str}/client-keys/{kid:str}/revoke", status_code=200)
async def revoke_client_key(
    request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession, app_id: str, kid: str
) -> Response[Any]:
    app = await runtime.tenancy.get_app(app_id, session.scope)
    await runtime.tenancy.revoke_client_key(kid, app_id, session.scope)
    await audit(runtime).record(session.email, "client_key.revoke", tenant_id=app.tenant_id, app_id=app_id, target=kid)
    return _client_keys(request, await _client_ctx(runtime, session, app_id, notice=f"Client key {kid} revoked."))


handlers = [
    server_keys,
    create_server_key,
    revoke_server_key,
    rotate_server_key,
    client_keys,
    create_client_key,
    revoke_client_key,
]
