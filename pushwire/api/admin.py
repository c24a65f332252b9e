"""Operator endpoints: the instance registry and the live global config.

Signed like the server API, with an operator key (`pushwire key create --operator`).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get

from pushwire.api.signed import signed_caller
from pushwire.errors import ApiError
from pushwire.registry.base import InstanceInfo
from pushwire.runtime import Runtime


async def _operator(request: Request[Any, Any, Any], runtime: Runtime) -> None:
    caller, _ = await signed_caller(request, runtime, None)
    if not caller.is_operator:
        raise ApiError(403, "scope_missing", "operator key required")


@get("/api/v1/admin/instances", tags=["operator API"], summary="Live instances from the registry (operator key)")
async def admin_instances(request: Request[Any, Any, Any], runtime: Runtime) -> dict[str, list[InstanceInfo]]:
    await _operator(request, runtime)
    return {"instances": sorted(await runtime.backends.registry.instances(), key=lambda i: i.id)}


@get("/api/v1/admin/config", tags=["operator API"], summary="This instance's effective global config (operator key)")
async def admin_config(request: Request[Any, Any, Any], runtime: Runtime) -> dict[str, Any]:
    await _operator(request, runtime)
    return {"instance": runtime.settings.instance_id, "config": runtime.config.effective()}
