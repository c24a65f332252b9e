"""The cache contract. Redis is the shared implementation; memory is a real single-node engine.

The cache is never the source of truth (Redis may lose acknowledged writes on failover):
everything here can be rebuilt from the database or safely forgotten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import msgspec


class TokenBucketResult(msgspec.Struct, frozen=True):
    allowed: bool
    remaining: float
    # Seconds until enough tokens exist for this request; 0 when allowed.
    retry_after: float


class BucketTake(msgspec.Struct, frozen=True):
    """A take_tokens, for admit."""

    key: str
    rate: float
    burst: int
    cost: int = 1


class Admission(msgspec.Struct, frozen=True):
    """What admit found: whether the nonce was new, the stamp, and the bucket's answer."""

    fresh: bool  # this call stored the nonce (False: it was already there, a replay)
    stamp: bytes  # the value at the stamp key; b"" when there is none
    # The token bucket's answer; None when no bucket was asked for or the nonce was not fresh
    # (a replay takes no tokens).
    bucket: TokenBucketResult | None = None


class ListPush(msgspec.Struct, frozen=True):
    """One list_push_capped, for list_push_capped_many."""

    key: str
    values: list[bytes]
    max_len: int
    ttl: float | None = None


class Cache(Protocol):
    """Keys are namespaced by the implementation's prefix; callers pass bare keys."""

    # Whether other processes (other instances, the CLI) see this cache's keys: Redis yes, the
    # memory engine no. In-process caches of shared state check for changes more often without it.
    shared: bool

    async def start(self) -> None:
        """Connect; raise BackendUnavailable if the service does not answer."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise BackendUnavailable when the backend does not answer."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...

    async def set_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        """Atomically store key only if missing; True when this call stored it (nonces)."""

    async def delete(self, *keys: str) -> None: ...

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add to a counter, creating it at 0; ttl is set only when the key is created."""

    async def take_tokens(self, key: str, rate: float, burst: int, cost: int = 1) -> TokenBucketResult:
        """Token bucket refilled at `rate`/s up to `burst`; atomic across callers."""

    async def admit(
        self, nonce_key: str, nonce_ttl: float, stamp_key: str, bucket: BucketTake | None = None
    ) -> Admission:
        """A signed request's cache work in one atomic round trip: set_if_absent(nonce_key), get
        stamp_key, and, when the nonce was fresh and `bucket` is given, take_tokens on it."""

    async def list_push_capped(self, key: str, values: Sequence[bytes], max_len: int, ttl: float | None = None) -> None:
        """LPUSH each value in order (the last one ends at the head), then LTRIM to max_len."""

    async def list_range(self, key: str, start: int, stop: int) -> list[bytes]:
        """LRANGE semantics: inclusive stop, negative indexes count from the tail."""

    async def list_length(self, key: str) -> int: ...

    # Batched forms: one network round trip for many keys (span store flushes, console reads).
    async def list_push_capped_many(self, pushes: Sequence[ListPush]) -> None:
        """list_push_capped for each entry, in order, in one round trip."""

    async def list_range_many(self, keys: Sequence[str], start: int, stop: int) -> list[list[bytes]]:
        """list_range of each key, in the order given."""

    async def set_many(self, values: Mapping[str, bytes], ttl: float | None = None) -> None:
        """set of each key, all with the same ttl, in one round trip."""

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """get of each key, in the order given (MGET)."""

    async def hash_set(self, key: str, mapping: Mapping[str, bytes], ttl: float | None = None) -> None: ...

    async def hash_get_all(self, key: str) -> dict[str, bytes]: ...

    async def hash_delete(self, key: str, *fields: str) -> None: ...
