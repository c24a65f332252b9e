"""Presence channel members across the cluster, in the cache.

One hash per channel (`pusher:members:{app}:{channel}`): field = socket id, value = the member's
instance, user id and user_info. A user is a member while any of its connections is (Pusher
counts users, not connections); entries of instances no longer in the registry are ignored and
removed when read. Join and leave are a write and a read: two joins of one user racing on two
instances may both announce it (member_added is then sent twice, harmless to the clients).
"""

from __future__ import annotations

from typing import Any

import msgspec

from pushwire.cache.base import Cache
from pushwire.pusher.occupancy import LiveInstances

# Pusher's limits: 100 members per presence channel, user_info up to 1 KB (notes §2.5).
MAX_MEMBERS = 100
MAX_USER_INFO_BYTES = 1024


class Member(msgspec.Struct, frozen=True, array_like=True):
    instance: str
    user_id: str
    user_info: msgspec.Raw = msgspec.Raw(b"null")  # JSON; a Raw cannot be optional


_DECODER = msgspec.json.Decoder(Member)


def members_key(app_id: str, channel: str) -> str:
    return f"pusher:members:{app_id}:{channel}"


class ChannelFull(Exception):
    pass


class Members:
    def __init__(self, cache: Cache, live: LiveInstances) -> None:
        self.cache = cache
        self.live = live

    async def _read(self, key: str) -> dict[str, Member]:
        raw = await self.cache.hash_get_all(key)
        live = await self.live.ids()
        found: dict[str, Member] = {}
        dead = []
        for socket_id, value in raw.items():
            try:
                member = _DECODER.decode(value)
            except (msgspec.DecodeError, msgspec.ValidationError):
                dead.append(socket_id)
                continue
            if member.instance in live:
                found[socket_id] = member
            else:
                dead.append(socket_id)
        if dead:
            await self.cache.hash_delete(key, *dead)
        return found

    async def join(
        self, app_id: str, channel: str, socket_id: str, user_id: str, user_info: bytes | None
    ) -> tuple[dict[str, Any], bool]:
        """Add the connection; returns the members (user id → user_info) and whether the user is
        new to the channel. ChannelFull when a new user would make more than MAX_MEMBERS."""
        key = members_key(app_id, channel)
        before = await self._read(key)
        users = {m.user_id for s, m in before.items() if s != socket_id}
        first = user_id not in users
        if first and len(users) >= MAX_MEMBERS:
            raise ChannelFull
        member = Member(self.live.instance_id, user_id, msgspec.Raw(user_info or b"null"))
        await self.cache.hash_set(key, {socket_id: msgspec.json.encode(member)})
        before[socket_id] = member
        return _users(before), first

    async def leave(self, app_id: str, channel: str, socket_id: str, user_id: str) -> bool:
        """Remove the connection; True when that was the user's last one on the channel."""
        key = members_key(app_id, channel)
        await self.cache.hash_delete(key, socket_id)
        rest = await self._read(key)
        return all(m.user_id != user_id for m in rest.values())

    async def users(self, app_id: str, channel: str) -> dict[str, Any]:
        """User id → user_info (None when none) of the channel's members, each user once."""
        return _users(await self._read(members_key(app_id, channel)))


def _users(members: dict[str, Member]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in members.values():
        if m.user_id not in out or out[m.user_id] is None:
            out[m.user_id] = msgspec.json.decode(m.user_info)
    return out
