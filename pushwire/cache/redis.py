"""Shared cache on Redis (redis.asyncio). Every multi-step operation is one atomic round trip.

Connection trouble (refused, timed out, a replica turned read-only mid-failover) surfaces as
BackendUnavailable; a key of the wrong type as TypeError and a non-integer counter as
ValueError, the same errors MemoryCache raises.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pushwire.cache.base import Admission, BucketTake, ListPush, TokenBucketResult
from pushwire.cache.memory import MAX_BUCKET_TTL_MS, check_bucket, check_max_len, check_ttl
from pushwire.cache.redis_batch import ScriptBatcher
from pushwire.errors import BackendUnavailable

CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 5.0
MAX_CONNECTIONS = 64

# Refill, then take `cost` tokens. The clock is Redis's own TIME, so app instances with skewed
# clocks share one timeline (allowed before writes since Redis 5 replicates script effects,
# the only mode in Redis 7). Floats go back as strings: Redis truncates Lua numbers to integers.
# The key expires once the bucket would be full again, when forgetting it changes nothing.
_BUCKET_FN = """
local function take(key, rate, burst, cost, max_ttl)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local state = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil or ts == nil then
    tokens = burst
    ts = now
  end
  if now > ts then
    tokens = tokens + (now - ts) * rate
    ts = now
  end
  tokens = math.min(tokens, burst)
  local allowed = 0
  local retry = 0
  if tokens >= cost then
    tokens = tokens - cost
    allowed = 1
  elseif cost > burst then
    retry = math.huge
  else
    retry = (cost - tokens) / rate
  end
  local ttl = math.min(max_ttl, math.ceil((burst - tokens) / rate * 1000) + 1)
  redis.call('HSET', key, 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts))
  redis.call('PEXPIRE', key, ttl)
  return {allowed, string.format('%.17g', tokens), string.format('%.17g', retry)}
end
"""
_TAKE_TOKENS = (
    _BUCKET_FN
    + """
return take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
"""
)
# admit: the nonce, the stamp and (for a fresh nonce) the bucket, atomically in one round trip.
# A missing stamp reads as '' (a Lua false would end the reply array early).
_ADMIT = (
    _BUCKET_FN
    + """
local fresh = redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1])
local stamp = redis.call('GET', KEYS[2]) or ''
if not fresh then return {0, stamp} end
if #KEYS < 3 then return {1, stamp} end
local r = take(KEYS[3], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
return {1, stamp, r[1], r[2], r[3]}
"""
)


class RedisCache:
    shared = True

    def __init__(self, url: str, prefix: str = "pushwire:") -> None:
        self.url = url
        self.prefix = prefix
        self._client: aioredis.Redis | None = None
        self._take: AsyncScript | None = None
        self._admits: ScriptBatcher | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self._client is not None:
            return
        # A blocking pool queues callers when all connections are busy (the default pool
        # fails with "Too many connections" instead), up to COMMAND_TIMEOUT.
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=MAX_CONNECTIONS,
            timeout=COMMAND_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
            # The default (10 retries, up to 1 s apart) would hide an outage for seconds;
            # one quick retry still covers a pooled connection the server already dropped.
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=1),
        )
        client = aioredis.Redis.from_pool(pool)
        try:
            # Bounded as a whole: a black-holed host must not stall start-up past the retries.
            async with asyncio.timeout(2 * CONNECT_TIMEOUT + 1):
                with _translated():
                    await client.ping()
        except TimeoutError:
            await client.aclose()
            raise BackendUnavailable("cache", f"no answer from Redis at {_safe(self.url)}") from None
        except BaseException:
            await client.aclose()
            raise
        self._client = client
        self._take = client.register_script(_TAKE_TOKENS)
        # Concurrent requests' admits go out together, one pipeline per flush.
        self._admits = ScriptBatcher(self._redis, client.register_script(_ADMIT), translate)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def ping(self) -> None:
        with _translated():
            await self._redis().ping()

    @property
    def connection_pool(self) -> object | None:
        """The client's connection pool (for /metrics' connection counts); None before start."""
        return None if self._client is None else self._client.connection_pool

    # -- strings and counters --------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        with _translated():
            value = await self._redis().get(self.prefix + key)
        return cast(bytes | None, value)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        px = None if ttl is None else check_ttl(ttl)
        with _translated():
            await self._redis().set(self.prefix + key, value, px=px)

    async def set_if_absent(self, key: str, value: bytes, ttl: float) -> bool:
        px = check_ttl(ttl)
        with _translated():
            return bool(await self._redis().set(self.prefix + key, value, px=px, nx=True))

    async def delete(self, *keys: str) -> None:
        if not keys:
            return  # DEL needs at least one key
        with _translated():
            await self._redis().delete(*(self.prefix + k for k in keys))

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        k = self.prefix + key
        with _translated():
            if ttl is None:
                return int(await self._redis().incrby(k, amount))
            px = check_ttl(ttl)
            # SET NX creates the counter at 0 with its TTL only if it is missing; MULTI makes
            # the pair atomic, so an existing counter keeps its original expiry.
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.set(k, b"0", px=px, nx=True)
                pipe.incrby(k, amount)
                _, value = await pipe.execute()
            return int(value)

    # -- token bucket -----------------------------------------------------------------

    async def take_tokens(self, key: str, rate: float, burst: int, cost: int = 1) -> TokenBucketResult:
        check_bucket(rate, burst, cost)
        client = self._redis()
        assert self._take is not None
        with _translated():
            allowed, remaining, retry = await self._take(
                keys=[self.prefix + key], args=[float(rate), burst, cost, MAX_BUCKET_TTL_MS], client=client
            )
        return TokenBucketResult(allowed=allowed == 1, remaining=float(remaining), retry_after=float(retry))

    async def admit(
        self, nonce_key: str, nonce_ttl: float, stamp_key: str, bucket: BucketTake | None = None
    ) -> Admission:
        px = check_ttl(nonce_ttl)
        keys = [self.prefix + nonce_key, self.prefix + stamp_key]
        args: list[float | int] = [px]
        if bucket is not None:
            check_bucket(bucket.rate, bucket.burst, bucket.cost)
            keys.append(self.prefix + bucket.key)
            args += [float(bucket.rate), bucket.burst, bucket.cost, MAX_BUCKET_TTL_MS]
        assert self._admits is not None
        reply = await self._admits.call(keys, args)
        fresh, stamp = reply[0] == 1, bytes(reply[1])
        taken = None
        if len(reply) == 5:
            taken = TokenBucketResult(allowed=reply[2] == 1, remaining=float(reply[3]), retry_after=float(reply[4]))
        return Admission(fresh=fresh, stamp=stamp, bucket=taken)

    # -- capped lists -----------------------------------------------------------------

    async def list_push_capped(self, key: str, values: Sequence[bytes], max_len: int, ttl: float | None = None) -> None:
        check_max_len(max_len)
        px = None if ttl is None else check_ttl(ttl)
        k = self.prefix + key
        with _translated():
            async with self._redis().pipeline(transaction=True) as pipe:
                if values:
                    pipe.lpush(k, *values)  # LPUSH needs at least one value
                pipe.ltrim(k, 0, max_len - 1)
                if px is not None:
                    pipe.pexpire(k, px)
                await pipe.execute()

    async def list_range(self, key: str, start: int, stop: int) -> list[bytes]:
        with _translated():
            return cast(list[bytes], await self._redis().lrange(self.prefix + key, start, stop))

    async def list_length(self, key: str) -> int:
        with _translated():
            return int(await self._redis().llen(self.prefix + key))

    # -- batched forms: one pipeline each ----------------------------------------------

    async def list_push_capped_many(self, pushes: Sequence[ListPush]) -> None:
        for push in pushes:
            check_max_len(push.max_len)
        if not pushes:
            return
        with _translated():
            async with self._redis().pipeline(transaction=True) as pipe:
                for push in pushes:
                    k = self.prefix + push.key
                    if push.values:
                        pipe.lpush(k, *push.values)
                    pipe.ltrim(k, 0, push.max_len - 1)
                    if push.ttl is not None:
                        pipe.pexpire(k, check_ttl(push.ttl))
                await pipe.execute()

    async def list_range_many(self, keys: Sequence[str], start: int, stop: int) -> list[list[bytes]]:
        if not keys:
            return []
        with _translated():
            async with self._redis().pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.lrange(self.prefix + key, start, stop)
                return [list(r) for r in await pipe.execute()]

    async def set_many(self, values: Mapping[str, bytes], ttl: float | None = None) -> None:
        px = None if ttl is None else check_ttl(ttl)
        if not values:
            return
        with _translated():
            async with self._redis().pipeline(transaction=False) as pipe:
                for key, value in values.items():
                    pipe.set(self.prefix + key, value, px=px)
                await pipe.execute()

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []  # MGET needs at least one key
        with _translated():
            return cast(list[bytes | None], await self._redis().mget([self.prefix + k for k in keys]))

    # -- hashes -----------------------------------------------------------------------

    async def hash_set(self, key: str, mapping: Mapping[str, bytes], ttl: float | None = None) -> None:
        px = None if ttl is None else check_ttl(ttl)
        if not mapping:
            return  # HSET refuses an empty mapping; nothing to do (as in MemoryCache)
        k = self.prefix + key
        with _translated():
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.hset(k, mapping=cast(Any, dict(mapping)))  # redis-py types keys invariantly
                if px is not None:
                    pipe.pexpire(k, px)
                await pipe.execute()

    async def hash_get_all(self, key: str) -> dict[str, bytes]:
        with _translated():
            raw = cast(dict[bytes, bytes], await self._redis().hgetall(self.prefix + key))
        return {f.decode(): v for f, v in raw.items()}

    async def hash_delete(self, key: str, *fields: str) -> None:
        if not fields:
            return  # HDEL needs at least one field
        with _translated():
            await self._redis().hdel(self.prefix + key, *fields)

    # -- internals --------------------------------------------------------------------

    def _redis(self) -> aioredis.Redis:
        if self._client is None:
            raise BackendUnavailable("cache", "RedisCache is not started (or already closed)")
        return self._client


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Map redis-py errors onto the ones every Cache raises."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, ReadOnlyError, ResponseError) as exc:
        mapped = translate(exc)
        if mapped is exc:
            raise
        raise mapped from exc


def translate(exc: BaseException) -> BaseException:
    """The error every Cache raises for a redis-py error (itself when it has no counterpart)."""
    if isinstance(exc, RedisConnectionError | RedisTimeoutError | ReadOnlyError):
        mapped: BaseException = BackendUnavailable("cache", f"Redis: {exc or type(exc).__name__}")
    elif isinstance(exc, ResponseError) and "WRONGTYPE" in str(exc):  # pipelines prefix the server's message
        mapped = TypeError(str(exc))
    elif isinstance(exc, ResponseError) and ("not an integer" in str(exc) or "overflow" in str(exc)):
        mapped = ValueError(str(exc))
    else:
        return exc
    mapped.__cause__ = exc
    return mapped


def _safe(url: str) -> str:
    """The URL without its password, for error messages."""
    head, sep, tail = url.rpartition("@")
    if not sep:
        return url
    scheme, _, _ = head.partition("://")
    return f"{scheme}://***@{tail}"
