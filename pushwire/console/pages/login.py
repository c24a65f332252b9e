"""GET/POST /console/login and POST /console/logout."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect

from pushwire.accounts.hashing import Busy
from pushwire.accounts.service import MAX_PASSWORD
from pushwire.console import csrf
from pushwire.console.auth import (
    COOKIE,
    IP_LOCKOUT_MAX,
    LOCKOUT_MAX,
    LOCKOUT_WINDOW,
    Lockout,
    Sessions,
    clear_session_cookie,
    login_client,
    secure_request,
    session_cookie,
)
from pushwire.console.errors import LOGIN_PATH
from pushwire.console.pages.common import Form
from pushwire.console.render import render
from pushwire.runtime import Runtime

LOCKED = "Too many failed sign-ins for this email. Try again in 15 minutes."
CLIENT_LOCKED = "Too many failed sign-ins from your network address. Try again in 15 minutes."
BUSY = "The server is busy signing other people in. Try again in a moment."
MAX_EMAIL = 254


def _login_form(
    request: Request[Any, Any, Any],
    status: int = 200,
    error: str | None = None,
    email: str = "",
    retry_after: int | None = None,
) -> Response[Any]:
    token = csrf.login_token(request)
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    response = render(request, "login.html", status=status, headers=headers, login_csrf=token, error=error, email=email)
    csrf.set_login_cookie(response, token, secure_request(request))
    return response


@get("/login", opt={"public": True})
async def login_page(request: Request[Any, Any, Any]) -> Response[Any]:
    return _login_form(request)


@post("/login", opt={"public": True}, status_code=303)
async def login(request: Request[Any, Any, Any], runtime: Runtime) -> Response[Any]:
    form = await Form.read(request)
    email, password = form.text("email").lower(), form.raw("password")
    if not email or not password:
        return _login_form(request, 400, "Enter your email and password.", email[:MAX_EMAIL])
    if len(email) > MAX_EMAIL or len(password) > MAX_PASSWORD:
        return _login_form(request, 400, "That email or password is too long.", email[:MAX_EMAIL])
    cache = runtime.backends.cache
    lockout = Lockout(cache)
    client = login_client(request, runtime.settings.trusted_networks)
    if await lockout.client_locked(client):
        return _login_form(request, 429, CLIENT_LOCKED, email, LOCKOUT_WINDOW)
    if await lockout.locked(email):
        return _login_form(request, 429, LOCKED, email, LOCKOUT_WINDOW)
    try:
        account = await runtime.accounts.verify(email, password)
    except Busy:
        return _login_form(request, 503, BUSY, email, 1)
    if account is None:
        failures = await lockout.failed(email)
        client_failures = await lockout.client_failed(client)
        if failures >= LOCKOUT_MAX:
            return _login_form(request, 429, LOCKED, email, LOCKOUT_WINDOW)
        if client_failures >= IP_LOCKOUT_MAX:
            return _login_form(request, 429, CLIENT_LOCKED, email, LOCKOUT_WINDOW)
        return _login_form(request, 401, "Wrong email or password.", email)
    await lockout.clear(email)
    sessions = Sessions(cache)
    if old := request.cookies.get(COOKIE):
        await sessions.delete(old)
    sid, _ = await sessions.create(account)
    response = Redirect("/console/", status_code=303)
    response.set_cookie(session_cookie(request, sid))
    response.delete_cookie(csrf.LOGIN_COOKIE, path=csrf.LOGIN_PATH)
    return response


@post("/logout", opt={"viewer_ok": True}, status_code=303)
async def logout(request: Request[Any, Any, Any], runtime: Runtime) -> Response[Any]:
    await Sessions(runtime.backends.cache).delete(request.cookies.get(COOKIE, ""))
    response = Redirect(LOGIN_PATH, status_code=303)
    clear_session_cookie(response)
    return response


handlers = [login_page, login, logout]
