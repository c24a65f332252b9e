"""CSRF protection: a per-session token on every POST (form field `_csrf` or header X-CSRF-Token).

Pages carry the token in each form and in `hx-headers` on <body>, so HTMX posts send the header.
The login form, made before any session exists, uses a double-submit cookie instead.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from litestar import Request, Response
from litestar.datastructures import Cookie

from pushwire.console.errors import Forbidden

HEADER = "x-csrf-token"
FIELD = "_csrf"
LOGIN_COOKIE = "pushwire_console_login"
LOGIN_PATH = "/console/login"
_REFUSED = "The form's security token is missing or out of date. Reload the page and try again."


def new_token() -> str:
    return secrets.token_urlsafe(32)


async def _sent_token(request: Request[Any, Any, Any]) -> str:
    token = request.headers.get(HEADER, "")
    if token:
        return token
    form = await request.form()
    value = form.get(FIELD, "")
    return value if isinstance(value, str) else ""


def _same(sent: str, expected: str) -> bool:
    return bool(sent) and bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


async def check(request: Request[Any, Any, Any], expected: str) -> None:
    if not _same(await _sent_token(request), expected):
        raise Forbidden(_REFUSED)


async def check_login(request: Request[Any, Any, Any]) -> None:
    if not _same(await _sent_token(request), request.cookies.get(LOGIN_COOKIE, "")):
        raise Forbidden(_REFUSED)


def login_token(request: Request[Any, Any, Any]) -> str:
    """The login form's token: the one in the browser's cookie, or a new one."""
    return request.cookies.get(LOGIN_COOKIE) or new_token()


def set_login_cookie(response: Response[Any], token: str, secure: bool) -> None:
    response.set_cookie(
        Cookie(
            key=LOGIN_COOKIE, value=token, path=LOGIN_PATH, httponly=True, samesite="lax", secure=secure, max_age=3600
        )
    )
