"""The web console: server-rendered Jinja2 pages and HTMX fragments under /console.

Mounted by create_app with `console_router()` (pages) and `static_router()` (/static: htmx, CSS).
"""

from pushwire.console.router import console_router, static_router

__all__ = ["console_router", "static_router"]
