"""The "try it" panel: mint a test client token, send a test push to a user or channel."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, post

from pushwire.api.schemas import PushBody
from pushwire.api.validation import to_request
from pushwire.cli.tenancy import mint_token
from pushwire.console.auth import ConsoleSession
from pushwire.console.pages.common import Form, audit, page_or_fragment
from pushwire.names import is_user_id
from pushwire.runtime import Runtime
from pushwire.tenants.service import Invalid
from pushwire.tracing.provider import forced_context
from pushwire.tracing.spans import downstream_traceparent, push_span


@post("/apps/{app_id:str}/try/token", status_code=200)
async def try_token(
    request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession, app_id: str
) -> Response[Any]:
    app = await runtime.tenancy.get_app(app_id, session.scope)
    form = await Form.read(request)
    user_id = form.text("user_id")
    if not is_user_id(user_id):
        raise Invalid("user ids are 1..128 characters of A-Z a-z 0-9 _ - = @ , . ;")
    ttl = form.number("ttl", "Lifetime", 1, app.limits.max_token_lifetime) if form.text("ttl") else 3600
    ttl = min(ttl, app.limits.max_token_lifetime)
    kid, secret = await runtime.tenancy.hs256_signing_secret(app_id, session.scope)
    channels = form.words("channels")
    token = mint_token(app_id, user_id, kid, secret, ttl, channels)
    return page_or_fragment(
        request,
        "_try_token.html",
        title="Test token",
        back=f"/console/apps/{app_id}",
        app=app,
        token=token,
        user_id=user_id,
        ttl=ttl,
        kid=kid,
        channels=channels,
    )


@post("/apps/{app_id:str}/try/push", status_code=200)
async def try_push(
    request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession, app_id: str
) -> Response[Any]:
    app = await runtime.tenancy.get_app(app_id, session.scope)
    form = await Form.read(request)
    if not app.enabled:
        raise Invalid("this app is disabled: enable it in the settings to push")
    if not runtime.push_enabled:
        raise Invalid("publishing is paused by the operators")
    kind, targets = form.text("target_kind", "user"), form.words("target")
    if not targets:
        raise Invalid("give a user id or a channel to push to")
    data = form.raw("data").strip() or "{}"
    try:
        msgspec.json.decode(data)
    except msgspec.DecodeError:
        raise Invalid('data must be JSON, e.g. {"text": "hello"}') from None
    raw = msgspec.Raw(data.encode())
    event = form.text("event") or "console.test"
    if kind == "channel":
        body = PushBody(event=event, data=raw, channels=targets)
    elif kind == "user":
        body = PushBody(event=event, data=raw, users=targets)
    else:
        raise Invalid("push to a user or a channel")
    # Always traced, whatever the sample ratio, so the result can link to its waterfall.
    with push_span(runtime.tracing.tracer, "/console/apps/{app_id}/try/push", None, forced_context()) as span:
        span.set_attributes({"app_id": app_id, "tenant_id": app.tenant_id, "instance_id": runtime.settings.instance_id})
        req = to_request(body, app, downstream_traceparent(span))  # the push API's own rules
        result = await runtime.publisher.publish(app.tenant_id, app_id, req)
        span.set_attribute("message_id", result.id)
    runtime.notify_published()
    await audit(runtime).record(
        session.email,
        "push.test",
        tenant_id=app.tenant_id,
        app_id=app_id,
        target=result.id,
        details={kind + "s": targets, "event": event},
    )
    return page_or_fragment(
        request,
        "_try_push.html",
        title="Test push",
        back=f"/console/apps/{app_id}",
        app=app,
        result=result,
        event=event,
    )


handlers = [try_token, try_push]
