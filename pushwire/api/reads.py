"""Presence and history reads of the server API."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.params import Parameter

from pushwire.api.schemas import BulkPresence, Connection, History, Presence
from pushwire.api.signed import signed_caller
from pushwire.errors import ApiError
from pushwire.names import is_channel, is_user_id
from pushwire.presence.store import UserPresence
from pushwire.runtime import Runtime

MAX_BULK_USERS = 1000


def _presence(p: UserPresence) -> Presence:
    return Presence(
        user_id=p.user_id,
        online=p.online,
        connections=[Connection(instance=r.instance_id, transport=r.transport, since=r.since) for r in p.routes],
        last_seen=p.last_seen,
    )


def _check_users(users: list[str]) -> None:
    bad = [{"field": "user", "message": f"invalid user id {u!r}"} for u in users if not is_user_id(u)]
    if bad:
        raise ApiError(422, "invalid_request", "invalid user id", bad)


@get("/api/v1/presence/{user_id:str}", tags=["server API"], summary="Presence of one user; scope presence:read")
async def presence_one(request: Request[Any, Any, Any], runtime: Runtime, user_id: str) -> Presence:
    caller, _ = await signed_caller(request, runtime, "presence:read")
    _check_users([user_id])
    return _presence((await runtime.presence.users(caller.app_id, [user_id]))[0])


@get("/api/v1/presence", tags=["server API"], summary="Presence of up to 1,000 users (?user=a&user=b)")
async def presence_bulk(
    request: Request[Any, Any, Any], runtime: Runtime, user: list[str] | None = Parameter(query="user", default=None)
) -> BulkPresence:
    caller, _ = await signed_caller(request, runtime, "presence:read")
    user = user or []
    if not 1 <= len(user) <= MAX_BULK_USERS:
        raise ApiError(
            422,
            "invalid_request",
            f"give 1..{MAX_BULK_USERS} user parameters",
            [{"field": "user", "message": f"got {len(user)}"}],
        )
    _check_users(user)
    return BulkPresence(users=[_presence(p) for p in await runtime.presence.users(caller.app_id, user)])


@get(
    "/api/v1/channels/{channel:str}/history",
    tags=["server API"],
    summary="Channel history, oldest first; scope history:read",
)
async def history(
    request: Request[Any, Any, Any],
    runtime: Runtime,
    channel: str,
    after: int = Parameter(query="after", default=0, ge=0),
    limit: int = Parameter(query="limit", default=100, ge=1, le=1000),
) -> History:
    caller, _ = await signed_caller(request, runtime, "history:read")
    if not is_channel(channel):
        raise ApiError(422, "invalid_request", "invalid channel name", [{"field": "channel", "message": channel}])
    page = await runtime.history.read(caller.app_id, channel, after, limit)
    return History(channel=page.channel, epoch=page.epoch, top=page.top, messages=page.messages)
