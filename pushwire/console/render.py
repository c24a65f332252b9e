"""Jinja2 rendering for the console: one environment, security headers on every page and fragment."""

from __future__ import annotations

import datetime as dt
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from litestar import Request, Response
from litestar.enums import MediaType

_env = Environment(
    loader=PackageLoader("pushwire.console", "templates"),
    autoescape=select_autoescape(("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
)

# Scripts and styles only from this origin (htmx, console.js, console.css); never framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Pages may carry a secret shown once: never keep them in a cache.
    "Cache-Control": "no-store",
}


def _when(value: str | dt.datetime | None) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_env.filters["when"] = _when


def is_hx(request: Request[Any, Any, Any]) -> bool:
    return request.headers.get("hx-request") == "true"


def render_text(template: str, **context: Any) -> str:
    return _env.get_template(template).render(**context)


def render(
    request: Request[Any, Any, Any],
    template: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Response[Any]:
    session = request.state.get("console_session")
    html = render_text(
        template,
        session=session,
        csrf=session.csrf if session else "",
        hx=is_hx(request),
        path=request.url.path,
        **context,
    )
    return Response(
        html, media_type=MediaType.HTML, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})}
    )
