"""Presence channel members across the cluster, in the cache.

One hash per channel (`pusher:members:{app}:{channel}`): field = socket id, value = the member's
instance, user id and user_info. A user is a member while any of its connections is (Pusher
counts users, not connections). Entries of instances no longer in the registry are ignored; join,
leave and `sweep` (run by every instance with members on the channel when another instance leaves
the registry) remove them and return the users who left with them, to be announced as
`member_removed`. Join and leave are a write and a read: two joins of one user racing on two
instances may both announce it, as two sweeps may both announce a departed user (an event sent
twice is harmless to the clients: pusher-js ignores a member it already has, or no longer has).
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

    async def _read(self, key: str, tidy: bool = True) -> tuple[dict[str, Member], set[str]]:
        """The live members by socket id, and the users who had entries only on departed instances
        (removed from the hash when `tidy`)."""
        raw = await self.cache.hash_get_all(key)
        decoded = {socket_id: _decoded(value) for socket_id, value in raw.items()}
        live = await self.live.ids()
        if any(m is not None and m.instance not in live for m in decoded.values()):
            live = await self.live.ids(fresh=True)  # maybe an instance newer than the cached list
        found: dict[str, Member] = {}
        dead: list[str] = []
        departed: set[str] = set()
        for socket_id, member in decoded.items():
            if member is not None and member.instance in live:
                found[socket_id] = member
            else:
                dead.append(socket_id)
                if member is not None:
                    departed.add(member.user_id)
        if dead and tidy:
            await self.cache.hash_delete(key, *dead)
        return found, departed - {m.user_id for m in found.values()}

    async def join(
        self, app_id: str, channel: str, socket_id: str, user_id: str, user_info: bytes | None
    ) -> tuple[dict[str, Any], bool, set[str]]:
        """Add the connection; returns the members (user id → user_info), whether the user is new
        to the channel, and the departed users found. ChannelFull when a new user would make more
        than MAX_MEMBERS."""
        key = members_key(app_id, channel)
        before, departed = await self._read(key)
        users = {m.user_id for s, m in before.items() if s != socket_id}
        first = user_id not in users
        if first and len(users) >= MAX_MEMBERS:
            raise ChannelFull
        member = Member(self.live.instance_id, user_id, msgspec.Raw(user_info or b"null"))
        await self.cache.hash_set(key, {socket_id: msgspec.json.encode(member)})
        before[socket_id] = member
        return _users(before), first, departed - {user_id}

    async def leave(self, app_id: str, channel: str, socket_id: str, user_id: str) -> tuple[bool, set[str]]:
        """Remove the connection; whether that was the user's last one on the channel, and the
        departed users found."""
        key = members_key(app_id, channel)
        await self.cache.hash_delete(key, socket_id)
        rest, departed = await self._read(key)
        return all(m.user_id != user_id for m in rest.values()), departed - {user_id}

    async def sweep(self, app_id: str, channel: str) -> set[str]:
        """Removes departed instances' entries; the users who left with them."""
        return (await self._read(members_key(app_id, channel)))[1]

    async def users(self, app_id: str, channel: str) -> dict[str, Any]:
        """User id → user_info (None when none) of the channel's members, each user once. Departed
        entries are left for a sweep, which announces them."""
        return _users((await self._read(members_key(app_id, channel), tidy=False))[0])


def _decoded(value: bytes) -> Member | None:
    try:
        return _DECODER.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # unreadable: removed like a departed entry


def _users(members: dict[str, Member]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in members.values():
        if m.user_id not in out or out[m.user_id] is None:
            out[m.user_id] = msgspec.json.decode(m.user_info)
    return out
