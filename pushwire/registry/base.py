"""The registry contract: leased instance entries, a key-value store with watches, and locks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal, Protocol

import msgspec


class InstanceInfo(msgspec.Struct, frozen=True):
    id: str
    address: str
    version: str
    started_at: str  # RFC 3339
    connections: int = 0
    # What the process runs (pushwire.roles); entries written before roles existed ran all three.
    roles: tuple[str, ...] = ("api", "realtime", "relay")


class WatchEvent(msgspec.Struct, frozen=True):
    kind: Literal["put", "delete"]
    key: str
    value: bytes | None = None


WatchHandler = Callable[[WatchEvent], Awaitable[None]]


class Watch(Protocol):
    async def cancel(self) -> None: ...


class Lock(Protocol):
    """A lock held under a lease: if the holder dies, the lock frees itself after `ttl`."""

    async def acquire(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds (None: forever, 0: try once); True when held."""

    async def release(self) -> None: ...

    async def refresh(self) -> bool:
        """Extend the lease; False when the lock was lost (the holder must stop its work)."""

    @property
    def is_held(self) -> bool: ...


class Registry(Protocol):
    async def start(self) -> None:
        """Connect; raise BackendUnavailable if the service does not answer."""

    async def close(self) -> None:
        """Stop keep-alives and revoke this process's leases (a clean leave)."""

    async def ping(self) -> None: ...

    async def register(self, info: InstanceInfo, ttl: int) -> None:
        """Publish this instance under a lease of `ttl` seconds, kept alive in the background."""

    async def update(self, info: InstanceInfo) -> None:
        """Replace this instance's entry, keeping its lease."""

    async def deregister(self) -> None: ...

    async def instances(self) -> list[InstanceInfo]: ...

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def get_prefix(self, prefix: str) -> dict[str, bytes]: ...

    async def watch_prefix(self, prefix: str, handler: WatchHandler) -> Watch:
        """Call `handler` for each put/delete under `prefix` after this call returns."""

    def lock(self, name: str, ttl: int) -> Lock: ...
