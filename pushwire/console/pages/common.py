"""Helpers shared by the page modules: form fields, the audit log, page-or-fragment responses."""

from __future__ import annotations

import re
from typing import Any

from litestar import Request, Response

from pushwire.console.audit import AuditLog
from pushwire.console.render import is_hx, render
from pushwire.runtime import Runtime
from pushwire.tenants.service import Invalid

_SPLIT = re.compile(r"[\s,]+")


class Form:
    """A posted form read once: strings, lists, integers and checkboxes with people-readable errors."""

    def __init__(self, data: Any) -> None:
        self.data = data

    @classmethod
    async def read(cls, request: Request[Any, Any, Any]) -> Form:
        return cls(await request.form())

    def text(self, name: str, default: str = "") -> str:
        value = self.data.get(name, default)
        return value.strip() if isinstance(value, str) else default

    def raw(self, name: str) -> str:
        value = self.data.get(name, "")
        return value if isinstance(value, str) else ""

    def values(self, name: str) -> list[str]:
        return [v for v in self.data.getall(name, []) if isinstance(v, str) and v]

    def words(self, name: str) -> list[str]:
        """A textarea of values separated by newlines, spaces or commas."""
        return [w for w in _SPLIT.split(self.raw(name)) if w]

    def has(self, name: str) -> bool:
        return name in self.data

    def number(self, name: str, label: str, low: int = 1, high: int = 2**31 - 1) -> int:
        raw = self.text(name)
        if not raw.isdigit():
            raise Invalid(f"{label} must be a whole number")
        value = int(raw)
        if not low <= value <= high:
            raise Invalid(f"{label} must be between {low} and {high}")
        return value


def audit(runtime: Runtime) -> AuditLog:
    return AuditLog(runtime.backends.database)


def page_or_fragment(
    request: Request[Any, Any, Any], fragment: str, *, title: str, back: str, status: int = 200, **context: Any
) -> Response[Any]:
    """HTMX posts get the fragment; plain form posts (no JavaScript) get it inside a whole page."""
    if is_hx(request):
        return render(request, fragment, status=status, **context)
    return render(request, "page.html", status=status, inner=fragment, title=title, back=back, **context)


__all__ = ["Form", "audit", "page_or_fragment"]
