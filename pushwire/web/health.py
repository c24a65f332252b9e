"""GET /health (the process answers) and GET /ready (every configured backend answers)."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Response, get

from pushwire.errors import BackendUnavailable
from pushwire.runtime import Runtime


class Health(msgspec.Struct):
    status: str
    instance: str
    version: str


class Readiness(msgspec.Struct, omit_defaults=True):
    status: str
    backends: dict[str, str]
    error: str | None = None
    message: str | None = None


@get("/health", include_in_schema=True, tags=["operations"], summary="The process is alive")
async def health(runtime: Runtime) -> Health:
    return Health(status="ok", instance=runtime.settings.instance_id, version=runtime.version)


@get("/ready", tags=["operations"], summary="Every configured backend answers (503 names the ones that do not)")
async def ready(runtime: Runtime) -> Response[Readiness]:
    async def probe(backend: object) -> str:
        try:
            async with asyncio.timeout(3):
                await backend.ping()  # type: ignore[attr-defined]
            return "ok"
        except (BackendUnavailable, TimeoutError, OSError) as exc:
            detail = exc.detail if isinstance(exc, BackendUnavailable) else (str(exc) or type(exc).__name__)
            return f"unavailable: {detail}"

    named = runtime.backends.named()
    results = await asyncio.gather(*(probe(b) for _s, b in named.values()))
    status = dict(zip(named, results, strict=True))
    down = [n for n, r in status.items() if r != "ok"]
    if down:
        body = Readiness(
            status="unavailable", backends=status, error="unavailable", message=f"not ready: {', '.join(down)}"
        )
        return Response(body, status_code=503)
    return Response(Readiness(status="ready", backends=status))
