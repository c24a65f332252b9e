"""Console sessions kept server-side in the cache, the login lockout, and the guard on every route.

The browser holds only a random session id (HttpOnly, SameSite=Lax cookie); the cache holds the
account, its CSRF token and times under a hash of that id, so a reader of the cache cannot
replay a session. Failed logins are counted in the cache per email (10 within 15 minutes lock
that email out until the window ends) and per client IP (20 within 15 minutes lock that address
out, whichever emails it tried: password spraying). The client IP is the direct peer, or the
X-Forwarded-For hop named by PUSHWIRE_TRUSTED_PROXIES; an IPv6 client counts by its /64.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
import time
from collections.abc import Sequence
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.handlers.base import BaseRouteHandler

from pushwire.accounts.service import Account
from pushwire.cache.base import Cache
from pushwire.console import csrf
from pushwire.console.errors import Forbidden, LoginRequired
from pushwire.tenants.ip_allow import Network, client_ip

COOKIE = "pushwire_console"
COOKIE_PATH = "/console"
IDLE_TTL = 8 * 3600  # a session unused this long ends
MAX_AGE = 24 * 3600  # and none lives longer than this
REFRESH_EVERY = 300  # seconds between idle-TTL refreshes (one cache write, not one per request)
LOCKOUT_MAX = 10
IP_LOCKOUT_MAX = 20
LOCKOUT_WINDOW = 15 * 60


class ConsoleSession(msgspec.Struct, kw_only=True):
    user_id: str
    email: str
    role: str
    tenant_id: str | None
    csrf: str
    created: float
    refreshed: float

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    @property
    def can_write(self) -> bool:
        return self.role in ("operator", "tenant_admin")

    @property
    def scope(self) -> str | None:
        """The tenant scope handed to every service call: None (all) only for operators."""
        return None if self.is_operator else (self.tenant_id or "")


_codec_enc = msgspec.json.Encoder()
_codec_dec = msgspec.json.Decoder(ConsoleSession)


def _session_key(sid: str) -> str:
    return "console:session:" + hashlib.sha256(sid.encode()).hexdigest()


def _lock_key(email: str) -> str:
    return "console:loginfail:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()


def _ip_lock_key(ip: str) -> str:
    return "console:loginfail-ip:" + hashlib.sha256(ip.encode()).hexdigest()


def login_client(connection: ASGIConnection[Any, Any, Any, Any], trusted: Sequence[Network]) -> str:
    """Whom the per-IP login counter is kept for: an address, an IPv6 /64, or "unknown"."""
    peer = connection.client.host if connection.client else None
    addr = client_ip(peer, connection.headers.get("x-forwarded-for"), trusted)
    if addr is None:
        return "unknown"
    if addr.version == 6:
        # One host usually holds a whole /64: counting single addresses would let it rotate freely.
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)


class Sessions:
    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    async def create(self, account: Account) -> tuple[str, ConsoleSession]:
        sid = secrets.token_urlsafe(32)
        now = time.time()
        session = ConsoleSession(
            user_id=account.user_id,
            email=account.email,
            role=account.role,
            tenant_id=account.tenant_id,
            csrf=csrf.new_token(),
            created=now,
            refreshed=now,
        )
        await self.cache.set(_session_key(sid), _codec_enc.encode(session), ttl=IDLE_TTL)
        return sid, session

    async def load(self, sid: str) -> ConsoleSession | None:
        if not sid or len(sid) > 128:
            return None
        raw = await self.cache.get(_session_key(sid))
        if raw is None:
            return None
        try:
            session = _codec_dec.decode(raw)
        except msgspec.DecodeError:
            return None
        now = time.time()
        if now - session.created > MAX_AGE:
            await self.delete(sid)
            return None
        if now - session.refreshed > REFRESH_EVERY:
            session.refreshed = now
            left = MAX_AGE - (now - session.created)
            await self.cache.set(_session_key(sid), _codec_enc.encode(session), ttl=min(IDLE_TTL, left))
        return session

    async def delete(self, sid: str) -> None:
        await self.cache.delete(_session_key(sid))


class Lockout:
    """Failed-login counters per email and per client. A success clears its email's counter only:
    clearing the client's too would let one valid account reset a spraying run."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    async def locked(self, email: str) -> bool:
        raw = await self.cache.get(_lock_key(email))
        return raw is not None and int(raw) >= LOCKOUT_MAX

    async def client_locked(self, client: str) -> bool:
        raw = await self.cache.get(_ip_lock_key(client))
        return raw is not None and int(raw) >= IP_LOCKOUT_MAX

    async def failed(self, email: str) -> int:
        # The TTL is set when the first failure creates the counter: a 15-minute window.
        return await self.cache.incr(_lock_key(email), 1, ttl=LOCKOUT_WINDOW)

    async def client_failed(self, client: str) -> int:
        return await self.cache.incr(_ip_lock_key(client), 1, ttl=LOCKOUT_WINDOW)

    async def clear(self, email: str) -> None:
        await self.cache.delete(_lock_key(email))


def _cache(connection: ASGIConnection[Any, Any, Any, Any]) -> Cache:
    return connection.app.state.runtime.backends.cache  # type: ignore[no-any-return]


def secure_request(request: ASGIConnection[Any, Any, Any, Any]) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "") == "https"


def session_cookie(request: Request[Any, Any, Any], sid: str) -> Cookie:
    return Cookie(
        key=COOKIE,
        value=sid,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=secure_request(request),
        max_age=MAX_AGE,
    )


def clear_session_cookie(response: Response[Any]) -> None:
    response.delete_cookie(COOKIE, path=COOKIE_PATH)


async def console_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Every console route: a session (unless public), the CSRF token on POST, then role rules.

    Handler opts: `public` (no session: login page, assets), `viewer_ok` (a POST that viewers may
    make: logout), `operator_only` (tenants pages).
    """
    request = connection if isinstance(connection, Request) else Request(connection.scope, connection.receive)
    opt = handler.opt
    if opt.get("public"):
        if request.method == "POST":
            await csrf.check_login(request)
        return
    session = await Sessions(_cache(request)).load(request.cookies.get(COOKIE, ""))
    if session is None:
        raise LoginRequired()
    request.state.console_session = session
    if request.method == "POST":
        await csrf.check(request, session.csrf)
        if not session.can_write and not opt.get("viewer_ok"):
            raise Forbidden("Your role is read-only (tenant viewer): nothing can be changed.")
    if opt.get("operator_only") and not session.is_operator:
        raise Forbidden("This page is for operators only.")


async def provide_session(request: Request[Any, Any, Any]) -> ConsoleSession:
    session = request.state.get("console_session")
    if session is None:  # only public handlers lack one, and they do not ask for it
        raise LoginRequired()
    return session  # type: ignore[no-any-return]
