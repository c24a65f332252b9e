"""Pusher channel names and kinds, and how they map onto the platform's channels.

Pusher channels are the platform's channels under the same names (the spec's channel charset is
Pusher's), except `#server-to-user-{id}`, which is the user's personal channel `user.{id}`.
"""

from __future__ import annotations

import re

from pushwire.names import (
    BROADCAST,
    PERSONAL_PREFIX,
    is_channel,
    is_room,
    is_user_id,
    personal_channel,
    user_of_channel,
)

SERVER_TO_USER = "#server-to-user-"
# Pusher's server libraries allow 200; the platform's channels (and the Pusher docs) stop at 164.
MAX_CHANNEL = 164
# Event names: printable ASCII without spaces (Laravel's `App\\Events\\X` included), at most 64
# characters as stored (Pusher's libraries allow 200); `pusher:` names are the protocol's own.
EVENT_RE = re.compile(r"[!-~]{1,64}")
MAX_EVENT = 64


def platform_channel(name: str) -> str | None:
    """The platform channel a Pusher channel name stands for; None for a name Pusher clients may not use."""
    if name.startswith(SERVER_TO_USER):
        user = name[len(SERVER_TO_USER) :]
        return personal_channel(user) if is_user_id(user) else None
    if not is_channel(name) or name == BROADCAST or name.startswith(PERSONAL_PREFIX):
        # `broadcast` and `user.*` are the native protocol's own: reached only as they are there.
        return None
    return name


def pusher_channel(platform: str) -> str:
    """The Pusher name of a platform channel (the inverse of platform_channel)."""
    user = user_of_channel(platform)
    return SERVER_TO_USER + user if user is not None else platform


def is_listed(platform: str) -> bool:
    """Whether the channel shows in the Pusher HTTP API's channel lists (personal ones do not)."""
    return is_room(platform)


def is_presence(name: str) -> bool:
    return name.startswith(("presence-", "presence-cache-"))


def is_encrypted(name: str) -> bool:
    return name.startswith("private-encrypted-")


def is_private(name: str) -> bool:
    """Needs a signed auth to subscribe: private (encrypted and cache variants included) or presence."""
    return name.startswith(("private-", "presence-"))


def is_cache(name: str) -> bool:
    return name.startswith(("cache-", "private-cache-", "private-encrypted-cache-", "presence-cache-"))


def allows_client_events(name: str) -> bool:
    """Client events: private and presence channels only (not public, not end-to-end encrypted)."""
    return is_private(name) and not is_encrypted(name)


def is_event(name: str) -> bool:
    return EVENT_RE.fullmatch(name) is not None and not name.startswith(("pusher:", "pusher_internal:"))
