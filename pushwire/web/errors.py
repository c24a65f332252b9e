"""The spec's error body `{"error", "message", "details"?}` for every failure, from any layer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import InterfaceError, OperationalError

from pushwire.errors import ApiError, BackendUnavailable
from pushwire.tenants.service import Invalid, NotFound


class ErrorBody(msgspec.Struct, omit_defaults=True):
    error: str
    message: str
    details: list[dict[str, Any]] | None = None


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[ErrorBody]:
    return Response(ErrorBody(error=code, message=message, details=details), status_code=status, headers=headers)


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[ErrorBody]:
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[ErrorBody]:
    extra = exc.extra if isinstance(exc.extra, list) else None
    return error_response(422, "invalid_request", exc.detail or "invalid request", extra or [])


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    code = _CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, exc.detail or code.replace("_", " "), headers=exc.headers)


def _not_found(_: Request[Any, Any, Any], exc: NotFound | NotFoundException) -> Response[ErrorBody]:
    return error_response(404, "not_found", "no such object")


def _invalid(_: Request[Any, Any, Any], exc: Invalid) -> Response[ErrorBody]:
    return error_response(422, "invalid_request", str(exc), [{"message": str(exc)}])


def _unavailable(_: Request[Any, Any, Any], exc: BackendUnavailable) -> Response[ErrorBody]:
    return error_response(
        503, "unavailable", f"{exc.backend} is unavailable; retry later", headers={"Retry-After": "1"}
    )


def _database_down(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    # Connection-level database errors (refused, gone away, lost): retryable, nothing was stored.
    request.logger.warning("database error on %s: %s", request.url.path, str(exc).splitlines()[0][:200])
    return error_response(503, "unavailable", "database is unavailable; retry later", headers={"Retry-After": "1"})


def _internal(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    request.logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(HTTP_500_INTERNAL_SERVER_ERROR, "internal", "internal error")


Handler = Callable[[Request[Any, Any, Any], Any], Response[ErrorBody]]


def _counted(handler: Handler) -> Handler:
    """Every JSON error response counts once in pushwire_errors_total{code}."""

    def wrapped(request: Request[Any, Any, Any], exc: Any) -> Response[ErrorBody]:
        response = handler(request, exc)
        runtime = request.app.state.get("runtime")
        if runtime is not None and isinstance(response.content, ErrorBody):
            runtime.metrics.error(response.content.error)
        return response

    return wrapped


_HANDLERS: dict[Any, Handler] = {
    ApiError: _api_error,
    ValidationException: _validation,
    NotFoundException: _not_found,
    NotFound: _not_found,
    Invalid: _invalid,
    BackendUnavailable: _unavailable,
    OperationalError: _database_down,
    InterfaceError: _database_down,
    HTTPException: _http,
    Exception: _internal,
}

EXCEPTION_HANDLERS: dict[Any, Any] = {exc: _counted(h) for exc, h in _HANDLERS.items()}
