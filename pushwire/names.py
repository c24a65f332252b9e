"""Name rules of the spec (section 1), shared by the API, the hub and the console."""

from __future__ import annotations

import re

CHANNEL_RE = re.compile(r"[A-Za-z0-9_\-=@,.;]{1,164}")
USER_ID_RE = re.compile(r"[A-Za-z0-9_\-=@,.;]{1,128}")
EVENT_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
APP_ID_RE = re.compile(r"[0-9]{1,20}")

BROADCAST = "broadcast"
PERSONAL_PREFIX = "user."


def is_channel(name: str) -> bool:
    return CHANNEL_RE.fullmatch(name) is not None


def is_user_id(user_id: str) -> bool:
    return USER_ID_RE.fullmatch(user_id) is not None


def is_event(event: str) -> bool:
    return EVENT_RE.fullmatch(event) is not None


def is_room(channel: str) -> bool:
    """Neither a personal channel nor `broadcast`: a channel clients subscribe to by name."""
    return channel != BROADCAST and not channel.startswith(PERSONAL_PREFIX)


def personal_channel(user_id: str) -> str:
    return PERSONAL_PREFIX + user_id


def user_of_channel(channel: str) -> str | None:
    """The user id when `channel` is a personal channel, else None."""
    if channel.startswith(PERSONAL_PREFIX):
        rest = channel[len(PERSONAL_PREFIX) :]
        return rest if is_user_id(rest) else None
    return None
