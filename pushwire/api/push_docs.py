"""The push routes in the OpenAPI document.

push.py serves them as plain ASGI (for speed), and Litestar leaves ASGI routes out of its schema.
The declarations below are what it would have generated from ordinary handlers: a small app of
them is documented on its own, and its paths and components are merged into the app's document.
They are never served.
"""

from __future__ import annotations

from litestar import Litestar, post
from litestar._openapi.plugin import OpenAPIPlugin  # the app's schema builder (no public name)
from litestar.openapi.spec import OpenAPI

from pushwire.api.schemas import BatchBody, BatchResult, PushAccepted, PushBody

_DOC = "Signed with a server key (X-Pushwire-Key, -Timestamp, -Nonce, -Signature); scope `push`."
_NOT_SERVED = "documentation only: pushwire.api.push serves this route"


@post(
    "/api/v1/push",
    status_code=202,
    tags=["server API"],
    summary="Publish one message (202 after the database commit)",
    description=_DOC,
    operation_id="push",
)
async def _push(data: PushBody) -> PushAccepted:
    raise NotImplementedError(_NOT_SERVED)


@post(
    "/api/v1/push/batch",
    status_code=200,
    tags=["server API"],
    summary="Publish up to 100 messages; one result per message, in order",
    description=_DOC,
    operation_id="push_batch",
)
async def _push_batch(data: BatchBody) -> BatchResult:
    raise NotImplementedError(_NOT_SERVED)


def document_push_routes(app: Litestar) -> None:
    """Add the push routes to `app`'s OpenAPI document (no-op without one). The document is built
    here, once, and kept by Litestar: every later request for it sees the merged one."""
    if app.openapi_config is None:
        return
    schema: OpenAPI = app.plugins.get(OpenAPIPlugin).provide_openapi()
    docs = Litestar([_push, _push_batch], openapi_config=app.openapi_config).plugins.get(OpenAPIPlugin)
    extra = docs.provide_openapi()
    schema.paths = {**(schema.paths or {}), **(extra.paths or {})}
    schema.components.schemas.update(extra.components.schemas)
