"""Single-node cache engine: Redis semantics (strings, counters, capped lists, hashes, TTLs) in memory.

Everything runs on one event loop and no method awaits between reading and writing a key,
so each call is atomic without locks. Expired keys vanish lazily on access and are also
reaped by a periodic sweep (started by `start()`), so memory stays bounded even for keys
nobody reads again.

A TTL bounds memory only by (write rate × TTL): a per-user key kept for 30 days (presence's
last-seen time) grew this process by ~0.3 KiB for every user ever connected. So the sweep also
caps the *remembered* keys, those expiring more than `REMEMBER_HORIZON` from now, at
`max_remembered`: beyond it the ones expiring first are dropped (Redis' `volatile-ttl`
eviction, done here by count): of keys written with one TTL those are the least recently
written, so a user who just left is still remembered and the oldest leavers go. Keys expiring sooner are windows that must hold for their whole TTL
(nonces, sign-in lockouts, token buckets) and are never evicted; keys without a TTL neither.
The cache is never the source of truth (cache/base.py): an evicted key is what a lost one is.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from pushwire.cache.base import Admission, BucketTake, ListPush, TokenBucketResult
from pushwire.tasks import cancel_and_wait

# Longest TTL given to a token bucket key; past it the bucket restarts full (see take_tokens).
MAX_BUCKET_TTL_MS = 30 * 24 * 3600 * 1000
# Keys expiring later than this (s) may be evicted once more than MAX_REMEMBERED of them exist.
REMEMBER_HORIZON = 3600.0
MAX_REMEMBERED = 50_000  # ~17 MiB of small keys
_INT64 = (-(2**63), 2**63 - 1)
_INTEGER = re.compile(rb"-?[0-9]+")
_T = TypeVar("_T")
WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"


# -- argument checks shared with the Redis backend (same errors from both engines) -------


def check_ttl(ttl: float) -> int:
    """Seconds → whole milliseconds, rounded up so a key never lives shorter than asked."""
    if not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
    return max(1, math.ceil(ttl * 1000))


def check_max_len(max_len: int) -> None:
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len!r}")


def check_bucket(rate: float, burst: int, cost: int) -> None:
    if not math.isfinite(rate) or rate <= 0:
        raise ValueError(f"rate must be a positive number of tokens per second, got {rate!r}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, got {burst!r}")
    if cost < 0:
        raise ValueError(f"cost must not be negative, got {cost!r}")


def bucket_ttl_ms(tokens: float, rate: float, burst: int) -> int:
    """How long until the bucket is full again: forgetting it after that changes nothing."""
    return min(MAX_BUCKET_TTL_MS, math.ceil((burst - tokens) / rate * 1000) + 1)


# -- the engine ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float  # time.monotonic() of the last refill


_Value = bytes | deque[bytes] | dict[str, bytes] | _Bucket


@dataclass(slots=True)
class _Entry:
    value: _Value
    expires_at: float | None = None  # time.monotonic() deadline


class MemoryCache:
    shared = False  # this process only

    def __init__(
        self, prefix: str = "pushwire:", *, sweep_interval: float = 1.0, max_remembered: int = MAX_REMEMBERED
    ) -> None:
        self.prefix = prefix
        self._sweep_interval = sweep_interval
        self.max_remembered = max_remembered
        self.evicted = 0  # remembered keys dropped by the cap (for /metrics)
        self._data: dict[str, _Entry] = {}
        # The cap is checked by scanning every key, so only once the cache has grown by a
        # sixteenth of the cap since the last check (amortised: a few entries per write).
        self._check_at = max_remembered + self._slack
        # (deadline, key) for every TTL ever set; stale rows are skipped when popped and
        # dropped by _compact, so refreshing a TTL repeatedly does not grow it forever.
        self._deadlines: list[tuple[float, str]] = []
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        """Keys held, including expired ones not reaped yet (for tests and metrics)."""
        return len(self._data)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep_forever(), name=f"cache-sweep:{self.prefix}")

    async def close(self) -> None:
        await cancel_and_wait(self._sweeper)
        self._sweeper = None

    async def ping(self) -> None:
        return None

    # -- strings and counters --------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        entry = self._live(self.prefix + key)
        if entry is None:
            return None
        return _typed(entry, bytes)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        ms = None if ttl is None else check_ttl(ttl)
        self._put(self.prefix + key, _bytes(value), ms)  # like SET: replaces any type, resets the TTL

    async def set_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        return self._set_if_absent(key, value, check_ttl(ttl))

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(self.prefix + key, None)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        ms = None if ttl is None else check_ttl(ttl)
        k = self.prefix + key
        entry = self._live(k)
        current = 0
        if entry is not None:
            raw = _typed(entry, bytes)
            if not _INTEGER.fullmatch(raw):
                raise ValueError("ERR value is not an integer or out of range")
            current = int(raw)
        result = current + amount
        if not _INT64[0] <= result <= _INT64[1]:
            raise ValueError("ERR increment or decrement would overflow")
        if entry is None:
            self._put(k, str(result).encode(), ms)  # the TTL applies only on creation
        else:
            entry.value = str(result).encode()
        return result

    # -- token bucket -----------------------------------------------------------------

    async def take_tokens(self, key: str, rate: float, burst: int, cost: int = 1) -> TokenBucketResult:
        check_bucket(rate, burst, cost)
        return self._take(key, rate, burst, cost)

    async def admit(
        self, nonce_key: str, nonce_ttl: float, stamp_key: str, bucket: BucketTake | None = None
    ) -> Admission:
        ms = check_ttl(nonce_ttl)
        if bucket is not None:
            check_bucket(bucket.rate, bucket.burst, bucket.cost)
        stamp_entry = self._live(self.prefix + stamp_key)
        stamp = b"" if stamp_entry is None else _typed(stamp_entry, bytes)
        if not self._set_if_absent(nonce_key, b"1", ms):
            return Admission(fresh=False, stamp=stamp)
        taken = None if bucket is None else self._take(bucket.key, bucket.rate, bucket.burst, bucket.cost)
        return Admission(fresh=True, stamp=stamp, bucket=taken)

    def _set_if_absent(self, key: str, value: bytes, ms: int) -> bool:
        k = self.prefix + key
        if self._live(k) is not None:
            return False
        self._put(k, _bytes(value), ms)
        return True

    def _take(self, key: str, rate: float, burst: int, cost: int) -> TokenBucketResult:
        k = self.prefix + key
        now = time.monotonic()
        entry = self._live(k, now)
        if entry is None:
            bucket = _Bucket(tokens=float(burst), updated=now)
            entry = self._put(k, bucket, None)
        else:
            bucket = _typed(entry, _Bucket)
        if now > bucket.updated:
            bucket.tokens += (now - bucket.updated) * rate
            bucket.updated = now
        bucket.tokens = min(bucket.tokens, float(burst))  # also when burst was lowered
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            allowed, retry_after = True, 0.0
        elif cost > burst:
            allowed, retry_after = False, math.inf  # can never be satisfied
        else:
            allowed, retry_after = False, (cost - bucket.tokens) / rate
        self._expire(k, entry, bucket_ttl_ms(bucket.tokens, rate, burst), now)
        return TokenBucketResult(allowed=allowed, remaining=bucket.tokens, retry_after=retry_after)

    # -- capped lists -----------------------------------------------------------------

    async def list_push_capped(self, key: str, values: Sequence[bytes], max_len: int, ttl: float | None = None) -> None:
        check_max_len(max_len)
        ms = None if ttl is None else check_ttl(ttl)
        pushed = [_bytes(v) for v in values]  # check them all before changing anything
        k = self.prefix + key
        entry = self._live(k)
        if entry is None:
            if not pushed:
                return  # LTRIM/EXPIRE on a missing key do nothing
            entry = self._put(k, deque(maxlen=max_len), None)
        items = _typed(entry, deque)
        if items.maxlen != max_len:
            # deque(maxlen=n).appendleft drops from the tail: exactly LPUSH + LTRIM 0 n-1.
            items = deque(itertools.islice(items, max_len), maxlen=max_len)
            entry.value = items
        items.extendleft(pushed)
        if ms is not None:
            self._expire(k, entry, ms)

    async def list_range(self, key: str, start: int, stop: int) -> list[bytes]:
        entry = self._live(self.prefix + key)
        if entry is None:
            return []
        items = _typed(entry, deque)
        n = len(items)
        start = max(start + n if start < 0 else start, 0)
        stop = min(stop + n if stop < 0 else stop, n - 1)
        if start > stop:
            return []
        return list(itertools.islice(items, start, stop + 1))

    async def list_length(self, key: str) -> int:
        entry = self._live(self.prefix + key)
        return 0 if entry is None else len(_typed(entry, deque))

    # -- batched forms (no round trips here: just the single-key operations in order) ---------

    async def list_push_capped_many(self, pushes: Sequence[ListPush]) -> None:
        for push in pushes:  # check every argument before changing anything, as Redis's pipeline does
            check_max_len(push.max_len)
            if push.ttl is not None:
                check_ttl(push.ttl)
        for push in pushes:
            await self.list_push_capped(push.key, push.values, push.max_len, push.ttl)

    async def list_range_many(self, keys: Sequence[str], start: int, stop: int) -> list[list[bytes]]:
        return [await self.list_range(key, start, stop) for key in keys]

    async def set_many(self, values: Mapping[str, bytes], ttl: float | None = None) -> None:
        if ttl is not None:
            check_ttl(ttl)
        for key, value in values.items():
            await self.set(key, value, ttl)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [await self.get(key) for key in keys]

    # -- hashes -----------------------------------------------------------------------

    async def hash_set(self, key: str, mapping: Mapping[str, bytes], ttl: float | None = None) -> None:
        ms = None if ttl is None else check_ttl(ttl)
        pushed = {str(f): _bytes(v) for f, v in mapping.items()}
        if not pushed:
            return  # Redis refuses an empty HSET; treat it as nothing to do in both engines
        k = self.prefix + key
        entry = self._live(k)
        if entry is None:
            entry = self._put(k, {}, None)
        _typed(entry, dict).update(pushed)
        if ms is not None:
            self._expire(k, entry, ms)

    async def hash_get_all(self, key: str) -> dict[str, bytes]:
        entry = self._live(self.prefix + key)
        return {} if entry is None else dict(_typed(entry, dict))

    async def hash_delete(self, key: str, *fields: str) -> None:
        k = self.prefix + key
        entry = self._live(k)
        if entry is None or not fields:
            return
        values = _typed(entry, dict)
        for field in fields:
            values.pop(field, None)
        if not values:
            del self._data[k]  # like Redis: an empty hash does not exist

    # -- internals --------------------------------------------------------------------

    def _live(self, k: str, now: float | None = None) -> _Entry | None:
        entry = self._data.get(k)
        if entry is not None and entry.expires_at is not None:
            if entry.expires_at <= (time.monotonic() if now is None else now):
                del self._data[k]
                return None
        return entry

    def _put(self, k: str, value: _Value, ms: int | None) -> _Entry:
        entry = _Entry(value)
        self._data[k] = entry
        if ms is not None:
            self._expire(k, entry, ms)
        return entry

    def _expire(self, k: str, entry: _Entry, ms: int, now: float | None = None) -> None:
        entry.expires_at = (time.monotonic() if now is None else now) + ms / 1000
        heapq.heappush(self._deadlines, (entry.expires_at, k))
        if len(self._deadlines) > 2 * len(self._data) + 1024:
            self._compact()

    def _compact(self) -> None:
        self._deadlines = [(e.expires_at, k) for k, e in self._data.items() if e.expires_at is not None]
        heapq.heapify(self._deadlines)

    def sweep(self) -> int:
        """Drop every expired key now, then evict remembered keys over the cap; returns how many
        went. The sweep task calls this every `sweep_interval`."""
        now = time.monotonic()
        removed = 0
        while self._deadlines and self._deadlines[0][0] <= now:
            _, k = heapq.heappop(self._deadlines)
            entry = self._data.get(k)
            # The row may be stale (key deleted, replaced or given a later deadline).
            if entry is not None and entry.expires_at is not None and entry.expires_at <= now:
                del self._data[k]
                removed += 1
        # After a burst of short-lived keys has gone, the next check comes no later than it
        # would have without the burst.
        self._check_at = min(self._check_at, max(self.max_remembered, len(self._data)) + self._slack)
        if len(self._data) > self._check_at:
            removed += self._evict(now)
        return removed

    def _evict(self, now: float) -> int:
        """Keep at most `max_remembered` keys expiring after the horizon; the earliest deadlines
        among them go. Evicts down to 15/16 of the cap, so the next scan waits for as many new
        keys, and rebuilds the deadline heap, whose rows of evicted keys would otherwise stay
        (with their key strings) until it doubled."""
        horizon = now + REMEMBER_HORIZON
        remembered = [
            (e.expires_at, k) for k, e in self._data.items() if e.expires_at is not None and e.expires_at > horizon
        ]
        excess = len(remembered) - self.max_remembered
        dropped = 0
        if excess > 0:
            for _, k in heapq.nsmallest(excess + self.max_remembered // 16, remembered):
                del self._data[k]
                dropped += 1
            self.evicted += dropped
            del remembered
            self._compact()
        self._check_at = len(self._data) + self._slack
        return dropped

    @property
    def _slack(self) -> int:
        return max(1, self.max_remembered // 16)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_interval)
            self.sweep()


def _typed(entry: _Entry, kind: type[_T]) -> _T:
    if not isinstance(entry.value, kind):
        raise TypeError(WRONGTYPE)
    return entry.value


def _bytes(value: bytes) -> bytes:
    # bytes(5) would silently make five NULs; refuse anything that is not already binary.
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"cache values are bytes, got {type(value).__name__}")
