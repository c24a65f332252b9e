"""GET /health (the process answers) and GET /ready (every configured backend answers).

Both are public (load balancers call them): /ready names a backend that is down but keeps its
error text (hosts, addresses, driver messages) for the server log.
"""

from __future__ import annotations

import asyncio
import logging

import msgspec
from litestar import Response, get

from pushwire.errors import BackendUnavailable
from pushwire.runtime import Runtime

log = logging.getLogger(__name__)


class Health(msgspec.Struct):
    status: str
    instance: str
    version: str


class Readiness(msgspec.Struct, omit_defaults=True):
    status: str
    # The backends that do not answer, by name ("database", "cache", "bus", "registry").
    failed: list[str]
    # Each backend: "ok" or "unavailable".
    backends: dict[str, str]
    error: str | None = None
    message: str | None = None


@get("/health", include_in_schema=True, tags=["operations"], summary="The process is alive")
async def health(runtime: Runtime) -> Health:
    return Health(status="ok", instance=runtime.settings.instance_id, version=runtime.version)


@get("/ready", tags=["operations"], summary="Every configured backend answers (503 names the ones that do not)")
async def ready(runtime: Runtime) -> Response[Readiness]:
    async def probe(name: str, backend: object) -> str:
        try:
            async with asyncio.timeout(3):
                await backend.ping()  # type: ignore[attr-defined]
            return "ok"
        except (BackendUnavailable, TimeoutError, OSError) as exc:
            detail = exc.detail if isinstance(exc, BackendUnavailable) else (str(exc) or type(exc).__name__)
            log.warning("not ready: %s unavailable: %s", name, detail)
            return "unavailable"

    named = runtime.backends.named()
    results = await asyncio.gather(*(probe(n, b) for n, (_s, b) in named.items()))
    status = dict(zip(named, results, strict=True))
    down = [n for n, r in status.items() if r != "ok"]
    if down:
        body = Readiness(
            status="unavailable",
            failed=down,
            backends=status,
            error="unavailable",
            message=f"not ready: {', '.join(down)}",
        )
        return Response(body, status_code=503)
    return Response(Readiness(status="ready", failed=[], backends=status))
