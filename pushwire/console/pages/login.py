"""GET/POST /console/login and POST /console/logout."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.response import Redirect

from pushwire.console import csrf
from pushwire.console.auth import (
    COOKIE,
    LOCKOUT_MAX,
    Lockout,
    Sessions,
    clear_session_cookie,
    secure_request,
    session_cookie,
)
from pushwire.console.errors import LOGIN_PATH
from pushwire.console.pages.common import Form
from pushwire.console.render import render
from pushwire.runtime import Runtime

LOCKED = "Too many failed sign-ins for this email. Try again in 15 minutes."


def _login_form(
    request: Request[Any, Any, Any], status: int = 200, error: str | None = None, email: str = ""
) -> Response[Any]:
    token = csrf.login_token(request)
    response = render(request, "login.html", status=status, login_csrf=token, error=error, email=email)
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
        return _login_form(request, 400, "Enter your email and password.", email)
    cache = runtime.backends.cache
    lockout = Lockout(cache)
    if await lockout.locked(email):
        return _login_form(request, 429, LOCKED, email)
    account = await runtime.accounts.verify(email, password)
    if account is None:
        failures = await lockout.failed(email)
        if failures >= LOCKOUT_MAX:
            return _login_form(request, 429, LOCKED, email)
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
