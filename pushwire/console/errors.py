"""Console refusals and the handlers that render every error as HTML (a page, or an HTMX fragment)."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException
from litestar.response import Redirect

from pushwire.console.render import is_hx, render
from pushwire.errors import ApiError, BackendUnavailable
from pushwire.tenants.service import Invalid, NotFound

log = logging.getLogger(__name__)

LOGIN_PATH = "/console/login"


class LoginRequired(Exception):
    """No session, or it expired: send the browser to the login page."""


class Forbidden(Exception):
    """A 403 with a message for the person: wrong CSRF token, read-only role, operators-only page."""


def error_response(request: Request[Any, Any, Any], status: int, title: str, message: str) -> Response[Any]:
    if is_hx(request):
        # Errors of fragments go to the page's alert area, leaving the form where it was.
        headers = {"HX-Retarget": "#console-error", "HX-Reswap": "innerHTML"}
        return render(request, "_error.html", status=status, headers=headers, title=title, message=message)
    return render(request, "error.html", status=status, title=title, message=message)


def _login_required(request: Request[Any, Any, Any], _: LoginRequired) -> Response[Any]:
    if is_hx(request):
        return Response(b"", status_code=401, headers={"HX-Redirect": LOGIN_PATH})
    return Redirect(LOGIN_PATH, status_code=303)


def _forbidden(request: Request[Any, Any, Any], exc: Forbidden) -> Response[Any]:
    return error_response(request, 403, "Not allowed", str(exc))


def _not_found(request: Request[Any, Any, Any], _: Exception) -> Response[Any]:
    return error_response(request, 404, "Not found", "There is no such object, or it is not yours to see.")


def _invalid(request: Request[Any, Any, Any], exc: Invalid) -> Response[Any]:
    return error_response(request, 422, "Please check the form", str(exc))


def _api_error(request: Request[Any, Any, Any], exc: ApiError) -> Response[Any]:
    details = "; ".join(str(d.get("message", "")) for d in exc.details or [] if d.get("message"))
    return error_response(
        request, exc.status, exc.code.replace("_", " ").capitalize(), exc.message + (f" ({details})" if details else "")
    )


def _unavailable(request: Request[Any, Any, Any], exc: BackendUnavailable) -> Response[Any]:
    return error_response(request, 503, "Unavailable", f"{exc.backend} is unavailable; retry in a moment.")


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    return error_response(request, exc.status_code, "Request refused", exc.detail or "request refused")


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("console error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(request, 500, "Something went wrong", "An internal error occurred; it has been logged.")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    LoginRequired: _login_required,
    Forbidden: _forbidden,
    NotFound: _not_found,
    NotFoundException: _not_found,
    Invalid: _invalid,
    ApiError: _api_error,
    BackendUnavailable: _unavailable,
    HTTPException: _http,
    Exception: _internal,
}
