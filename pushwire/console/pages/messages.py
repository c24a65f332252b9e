"""Message history of an app: search (page + HTMX fragment), one message's detail, and replay."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response, get, post

from pushwire.console.auth import ConsoleSession
from pushwire.console.pages.common import Form, audit, page_or_fragment
from pushwire.console.render import is_hx, render
from pushwire.messaging.browse import BrowseFilter, MessageBrowser
from pushwire.messaging.replay import Replayer, ReplayRequest, ReplayResult, ReplayTarget
from pushwire.runtime import Runtime
from pushwire.tenants.service import Invalid, NotFound
from pushwire.tenants.views import AppView

PAGE = 50
FIELDS = ("channel", "user", "event", "since", "until", "id")
TARGET_KINDS = {"own": "its own channel", "channel": "another channel", "user": "a user"}


def _time(value: str, label: str) -> dt.datetime | None:
    """ISO 8601 or the browser's datetime-local (no zone: read as UTC)."""
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid(f"{label} is not a date and time: use YYYY-MM-DD HH:MM (UTC)") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _filter(params: dict[str, str], before: str) -> BrowseFilter:
    if before and not before.isdigit():
        raise Invalid("bad page cursor")
    return BrowseFilter(
        channel=params["channel"] or None,
        user=params["user"] or None,
        event=params["event"] or None,
        since=_time(params["since"], "From"),
        until=_time(params["until"], "Until"),
        # Message ids are upper-case; people paste either.
        message_id=params["id"].upper() or None,
        before=int(before) if before else None,
        limit=PAGE,
    )


@get("/apps/{app_id:str}/messages")
async def messages_page(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    session: ConsoleSession,
    app_id: str,
    channel: str = "",
    user: str = "",
    event: str = "",
    since: str = "",
    until: str = "",
    id: str = "",
    before: str = "",
) -> Response[Any]:
    app = await runtime.tenancy.get_app(app_id, session.scope)  # NotFound outside the user's tenant
    params = {k: v.strip() for k, v in zip(FIELDS, (channel, user, event, since, until, id), strict=True)}
    query = urlencode({k: v for k, v in params.items() if v})
    ctx: dict[str, Any] = {
        "app": app,
        "f": params,
        "query": query,
        "kinds": TARGET_KINDS,
        "page_size": PAGE,
        "paged": bool(before),
    }
    try:
        page = await MessageBrowser(runtime.backends.database).search(app_id, _filter(params, before.strip()))
    except Invalid as exc:
        if is_hx(request):
            raise  # the error fragment, shown in the page's alert area
        return render(request, "messages.html", status=422, error=str(exc), page=None, **ctx)
    template = "_messages.html" if is_hx(request) else "messages.html"
    return render(request, template, page=page, **ctx)


def _pretty(data: str) -> str:
    try:
        return msgspec.json.format(data, indent=2)
    except msgspec.DecodeError:
        return data


@get("/apps/{app_id:str}/messages/{message_id:str}")
async def message_page(
    request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession, app_id: str, message_id: str
) -> Response[Any]:
    app = await runtime.tenancy.get_app(app_id, session.scope)
    browser = MessageBrowser(runtime.backends.database)
    deliveries = await browser.deliveries(app_id, message_id)
    if not deliveries:
        raise NotFound(message_id)
    first = deliveries[0]
    return render(
        request,
        "message.html",
        app=app,
        m=first,
        deliveries=deliveries,
        data=_pretty(first.data),
        size=len(first.data.encode()),
        replays=await browser.replays_of(app_id, first),
        kinds=TARGET_KINDS,
    )


def _replay_request(form: Form) -> ReplayRequest:
    kind = form.text("target_kind", "own")
    if kind not in TARGET_KINDS:
        raise Invalid("replay to the message's own channel, another channel or a user")
    target = ReplayTarget(kind=kind, name=form.text("target"))  # type: ignore[arg-type]
    if form.text("message_id"):
        return ReplayRequest(target=target, message_id=form.text("message_id"))
    if not form.text("channel"):
        raise Invalid("give a message id, or a channel and a range of offsets")
    return ReplayRequest(
        target=target,
        channel=form.text("channel"),
        from_offset=form.number("from_offset", "First offset", 1, 2**62),
        to_offset=form.number("to_offset", "Last offset", 1, 2**62),
    )


def _audit_details(req: ReplayRequest, result: ReplayResult) -> dict[str, Any]:
    source: dict[str, Any] = (
        {"channel": req.channel, "from_offset": req.from_offset, "to_offset": req.to_offset}
        if req.is_range
        else {"message_id": req.message_id}
    )
    return {
        "source": source,
        "to": {"kind": req.target.kind, "name": req.target.name},
        "count": len(result.items),
        "replayed": [
            {
                "of": i.original_id,
                "from": f"{i.original_channel}#{i.original_offset}",
                "id": i.id,
                "to": f"{i.channel}#{i.offset}",
            }
            for i in result.items
        ],
    }


async def _writable_app(runtime: Runtime, session: ConsoleSession, app_id: str) -> AppView:
    app = await runtime.tenancy.get_app(app_id, session.scope)
    if not app.enabled:
        raise Invalid("this app is disabled: enable it in the settings to replay")
    if not runtime.push_enabled:
        raise Invalid("publishing is paused by the operators")
    return app


@post("/apps/{app_id:str}/replay", status_code=200)
async def replay(
    request: Request[Any, Any, Any], runtime: Runtime, session: ConsoleSession, app_id: str
) -> Response[Any]:
    """Viewers never get here: the console guard refuses their POSTs (403), as a bad CSRF token."""
    app = await _writable_app(runtime, session, app_id)
    req = _replay_request(await Form.read(request))
    replayer = Replayer(runtime.publisher, MessageBrowser(runtime.backends.database))
    result = await replayer.replay(app.tenant_id, app_id, req)
    runtime.notify_published()
    target = req.message_id or f"{req.channel}#{req.from_offset}..{req.to_offset}"
    await audit(runtime).record(
        session.email,
        "message.replay",
        tenant_id=app.tenant_id,
        app_id=app_id,
        target=target,
        details=_audit_details(req, result),
    )
    return page_or_fragment(
        request,
        "_replayed.html",
        title="Replayed",
        back=f"/console/apps/{app_id}/messages",
        app=app,
        result=result,
        req=req,
        kinds=TARGET_KINDS,
    )


handlers = [messages_page, message_page, replay]
