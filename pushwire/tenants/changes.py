"""Change notices: what the tenancy service tells the running instances after a commit.

The service only calls an optional observer (it knows nothing of the registry or the hub). The
runtime and the CLI set one that puts the notice under `changes/apps/<app_id>` in the registry,
which every instance watches (pushwire/realtime/revocation.py): so a key revoked from the
console of one instance, or from the CLI on another machine, reaches every instance at once.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal

import msgspec

if TYPE_CHECKING:
    from pushwire.cache.base import Cache
    from pushwire.registry.base import Registry

log = logging.getLogger(__name__)

PREFIX = "changes/apps/"
# The app's stamp in the shared cache (tenants/key_cache.py): rewritten on every change, read by
# every signed request with its nonce. Kept a week: a stamp that expired reads as b"", which also
# makes every instance reload the app's keys once.
STAMP_TTL = 7 * 86_400.0

ChangeKind = Literal["client_key.revoke", "server_key.revoke", "app.update", "tenant.update"]


class AppChange(msgspec.Struct, frozen=True, kw_only=True):
    app_id: str
    kind: ChangeKind
    # Unique per notice: two equal changes in a row are still two registry events.
    id: str = msgspec.field(default_factory=lambda: uuid.uuid4().hex)
    at: float = msgspec.field(default_factory=time.time)


ChangeObserver = Callable[[AppChange], Awaitable[None]]

_decoder = msgspec.json.Decoder(AppChange)


def encode(change: AppChange) -> bytes:
    return msgspec.json.encode(change)


def decode(raw: bytes) -> AppChange:
    """Raises msgspec.ValidationError / DecodeError on anything that is not a notice."""
    return _decoder.decode(raw)


def stamp_key(app_id: str) -> str:
    return f"authstamp:{app_id}"


def cache_stamper(cache: Cache) -> ChangeObserver:
    """An observer that gives the app a new stamp, so cached server keys are reloaded everywhere
    on their next request (before the registry notice reaches the other instances)."""

    async def stamp(change: AppChange) -> None:
        await cache.set(stamp_key(change.app_id), change.id.encode(), ttl=STAMP_TTL)

    return stamp


def announcer(*observers: ChangeObserver) -> ChangeObserver:
    """Tell each observer in turn; the first failure is raised after the others were told."""

    async def announce(change: AppChange) -> None:
        failure: Exception | None = None
        for observer in observers:
            try:
                await observer(change)
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the others
                failure = failure or exc
        if failure is not None:
            raise failure

    return announce


def registry_publisher(registry: Registry) -> ChangeObserver:
    """An observer that puts each notice where every instance watches (one key per app, overwritten)."""

    async def publish(change: AppChange) -> None:
        await registry.put(PREFIX + change.app_id, encode(change))

    return publish
