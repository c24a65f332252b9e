"""The web console: server-rendered Jinja2 pages and HTMX fragments under /console.

Mounted by create_app with `console_router()`; its assets (htmx, CSS) come from /static (pushwire.web.static).
"""

from pushwire.console.router import console_router

__all__ = ["console_router"]
