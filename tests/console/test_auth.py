"""Login, lockout (per email and per client IP), load shedding, logout, and CSRF refusals."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from litestar import Litestar, Request

from pushwire.accounts.hashing import PasswordWorker
from pushwire.app import create_app
from pushwire.console.auth import IP_LOCKOUT_MAX, LOCKOUT_WINDOW, login_client
from pushwire.runtime import Runtime
from pushwire.settings import load_settings
from tests.console.conftest import BASE, PASSWORD, Browser, Console, mount_console
from tests.live import backend_env
from tests.services import unique


def random_ip() -> str:
    # Failed logins count per client IP in the shared Redis for 15 minutes: each test that fails
    # logins does so from an address of its own, never the fixture's 127.0.0.1.
    return f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"


def browser_at(app: Litestar, ip: str, owned: list[Browser], headers: dict[str, str] | None = None) -> Browser:
    """A console browser whose requests come from peer `ip`; closed with its fixture (`owned`)."""
    b = Browser(app)
    b.http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(ip, 40000)), base_url=BASE, headers=headers
    )
    owned.append(b)
    return b


def at(console: Console, ip: str, headers: dict[str, str] | None = None) -> Browser:
    return browser_at(console.app, ip, console._browsers, headers)


def unknown_email() -> str:
    return f"{unique('nobody-')}@example.com"


async def test_login_success_sets_a_safe_session_cookie(console: Console) -> None:
    b = console.browser()
    page = await b.get("/console/login")
    assert page.status_code == 200 and 'name="password"' in page.text
    response = await b.post("/console/login", {"email": console.emails["admin_a"], "password": PASSWORD}, hx=False)
    assert response.status_code == 303 and response.headers["location"] == "/console/"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("pushwire_console="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
    home = await b.get("/console/")
    assert home.status_code == 200 and console.emails["admin_a"] in home.text
    assert (
        home.headers["x-frame-options"] == "DENY"
        and "frame-ancestors 'none'" in home.headers["content-security-policy"]
    )


async def test_wrong_password_is_refused_without_a_session(console: Console) -> None:
    b = at(console, random_ip())
    response = await b.login(console.emails["admin_a"], "not the password")
    assert response.status_code == 401 and "Wrong email or password" in response.text
    assert "pushwire_console" not in b.http.cookies
    unknown = await b.login("nobody@example.com", "whatever-password")
    assert unknown.status_code == 401 and "Wrong email or password" in unknown.text
    home = await b.get("/console/")
    assert home.status_code == 303 and home.headers["location"] == "/console/login"


async def test_pages_and_fragments_need_a_session(console: Console) -> None:
    b = console.browser()
    app_id = console.app_a.app_id
    for path in ("/console/", f"/console/apps/{app_id}", "/console/audit", "/console/tenants"):
        response = await b.get(path)
        assert response.status_code == 303 and response.headers["location"] == "/console/login", path
    fragment = await b.get(f"/console/apps/{app_id}/presence/live", hx=True)
    assert fragment.status_code == 401 and fragment.headers["hx-redirect"] == "/console/login"


async def test_lockout_after_ten_failures_in_the_window(console: Console) -> None:
    b = at(console, random_ip())
    email = console.emails["admin_a"]
    for _ in range(9):
        assert (await b.login(email, "wrong password!")).status_code == 401
    tenth = await b.login(email, "wrong password!")
    assert tenth.status_code == 429 and "Too many failed sign-ins for this email" in tenth.text
    assert tenth.headers["retry-after"] == str(LOCKOUT_WINDOW)
    # Locked: even the right password is refused, and no session is made.
    right = await b.login(email, PASSWORD)
    assert right.status_code == 429 and "pushwire_console" not in b.http.cookies
    # Another email is not affected.
    assert (await console.browser().login(console.emails["viewer_a"])).status_code == 303


async def test_logout_ends_the_session_server_side(console: Console) -> None:
    b = await console.as_user("admin_a")
    sid = b.http.cookies["pushwire_console"]
    refused = await b.post("/console/logout", hx=False, csrf="")
    assert refused.status_code == 403  # logout is a POST too: CSRF-checked
    response = await b.post("/console/logout", hx=False)
    assert response.status_code == 303 and response.headers["location"] == "/console/login"
    assert "pushwire_console" not in b.http.cookies
    # The old cookie, replayed, no longer opens anything.
    replay = console.browser()
    replay.http.cookies.set("pushwire_console", sid, domain="pushwire.test", path="/console")
    assert (await replay.get("/console/")).status_code == 303


async def test_login_form_is_csrf_protected(console: Console) -> None:
    b = console.browser()
    await b.get("/console/login")
    response = await b.post(
        "/console/login", {"email": console.emails["admin_a"], "password": PASSWORD}, hx=False, csrf="forged-token"
    )
    assert response.status_code == 403 and "pushwire_console" not in b.http.cookies


async def test_posts_without_or_with_a_wrong_csrf_token_are_refused(console: Console) -> None:
    b = await console.as_user("admin_a")
    app_id = console.app_a.app_id
    before = await console.runtime.tenancy.list_server_keys(app_id, None)
    path = f"/console/apps/{app_id}/server-keys"
    form = {"label": "x", "scopes": "push"}
    for hx, token in ((True, ""), (False, ""), (True, "wrong-token"), (False, "wrong-token")):
        response = await b.post(path, form, hx=hx, csrf=token)
        assert response.status_code == 403, (hx, token)
        assert "security token" in response.text
    created = await b.post("/console/apps", {"name": "nope"}, csrf="")
    assert created.status_code == 403
    assert await console.runtime.tenancy.list_server_keys(app_id, None) == before
    assert [a.name for a in await console.runtime.tenancy.list_apps(console.tenant_a)] == ["web-a"]
    # An HTMX refusal lands in the page's alert area.
    hx = await b.post(path, form, csrf="wrong-token")
    assert hx.headers["hx-retarget"] == "#console-error"
    # Another user's token does not work either.
    other = await console.as_user("admin_b")
    assert (await b.post(path, form, csrf=other.csrf)).status_code == 403


async def test_client_ip_lockout_after_twenty_failures_whatever_the_emails(console: Console) -> None:
    ip = random_ip()
    # X-Forwarded-For from a peer that is no trusted proxy is the client's own claim: ignored.
    spoofing = at(console, ip, {"X-Forwarded-For": "192.0.2.1"})
    for i in range(IP_LOCKOUT_MAX - 1):
        spoofing.http.headers["X-Forwarded-For"] = f"192.0.2.{i + 1}"
        assert (await spoofing.login(unknown_email(), "wrong password!")).status_code == 401
    last = await spoofing.login(unknown_email(), "wrong password!")
    assert last.status_code == 429 and "from your network address" in last.text
    assert last.headers["retry-after"] == str(LOCKOUT_WINDOW)
    # Locked before any password check: even a right one from this address is refused.
    right = await at(console, ip).login(console.emails["admin_a"])
    assert right.status_code == 429 and "pushwire_console" not in right.cookies
    # The accounts themselves are not locked: from elsewhere they sign in.
    assert (await at(console, random_ip()).login(console.emails["admin_a"])).status_code == 303


async def test_a_success_does_not_reset_the_client_counter(console: Console) -> None:
    b = at(console, random_ip())
    for _ in range(IP_LOCKOUT_MAX - 2):
        assert (await b.login(unknown_email(), "wrong password!")).status_code == 401
    # One valid account of the attacker's own does not buy another round of guesses.
    assert (await b.login(console.emails["viewer_a"])).status_code == 303
    assert (await b.login(unknown_email(), "wrong password!")).status_code == 401
    assert (await b.login(unknown_email(), "wrong password!")).status_code == 429


async def test_overlong_or_missing_credentials_are_refused_before_hashing(console: Console) -> None:
    b = at(console, random_ip())
    before = console.runtime.accounts.passwords.pending
    for email, password in (
        ("a" * 250 + "@example.com", PASSWORD),
        (console.emails["admin_a"], "x" * 1025),
        ("", PASSWORD),
        (console.emails["admin_a"], ""),
    ):
        response = await b.login(email, password)
        assert response.status_code == 400 and "pushwire_console" not in b.http.cookies
    assert console.runtime.accounts.passwords.pending == before
    # None of these counted as a failed guess.
    assert (await b.login(console.emails["admin_a"])).status_code == 303


async def test_a_full_hashing_queue_answers_503_with_retry_after(console: Console) -> None:
    accounts = console.runtime.accounts
    accounts.passwords = PasswordWorker(accounts.hasher, workers=1, queue=0)
    release = threading.Event()
    blocker = asyncio.create_task(accounts.passwords.run(release.wait))
    try:
        while accounts.passwords.pending == 0:
            await asyncio.sleep(0.01)
        b = at(console, random_ip())
        busy = await b.login(console.emails["admin_a"])
        assert busy.status_code == 503 and "server is busy" in busy.text
        assert busy.headers["retry-after"] == "1" and "pushwire_console" not in b.http.cookies
    finally:
        release.set()
        await blocker
        accounts.passwords.shutdown()
    accounts.passwords = PasswordWorker(accounts.hasher)
    assert (await b.login(console.emails["admin_a"])).status_code == 303


@pytest.fixture(params=["single", "mariadb+redis"])
async def proxied(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Litestar, str, str]]:
    """An app behind a trusted proxy at a random address: (app, proxy address, an admin's email)."""
    proxy = random_ip()
    env = await backend_env(request, tmp_path, PUSHWIRE_TRUSTED_PROXIES=f"{proxy}/32")
    app = mount_console(create_app(load_settings(env)))
    runtime: Runtime = app.state.runtime
    await runtime.start()
    browsers: list[Browser] = []
    app.state.test_browsers = browsers
    try:
        tenant = await runtime.tenancy.create_tenant(unique("tenant-"))
        email = f"{unique('admin-')}@example.com"
        await runtime.accounts.create_user(email, PASSWORD, "tenant_admin", tenant.tenant_id)
        yield app, proxy, email
    finally:
        for b in browsers:
            await b.close()
        await runtime.stop()


async def test_behind_a_trusted_proxy_each_forwarded_client_counts_alone(
    proxied: tuple[Litestar, str, str],
) -> None:
    app, proxy, email = proxied
    owned = app.state.test_browsers
    client, neighbour = random_ip(), random_ip()
    attacker = browser_at(app, proxy, owned, {"X-Forwarded-For": client})
    for _ in range(IP_LOCKOUT_MAX - 1):
        assert (await attacker.login(unknown_email(), "wrong password!")).status_code == 401
    assert (await attacker.login(unknown_email(), "wrong password!")).status_code == 429
    assert (await attacker.login(email)).status_code == 429
    # Another client through the same proxy, and the proxy itself, are not locked out.
    assert (await browser_at(app, proxy, owned, {"X-Forwarded-For": neighbour}).login(email)).status_code == 303
    assert (await browser_at(app, proxy, owned).login(email)).status_code == 303
    # A spoofed left-most hop does not help: the proxy appends the real one, read right to left.
    spoofed = browser_at(app, proxy, owned, {"X-Forwarded-For": f"{neighbour}, {client}"})
    assert (await spoofed.login(email)).status_code == 429


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("10.1.2.3", None, [], "10.1.2.3"),
        ("10.1.2.3", "192.0.2.9", [], "10.1.2.3"),  # not a trusted proxy: its header is ignored
        ("10.1.2.3", "192.0.2.9", ["10.0.0.0/8"], "192.0.2.9"),
        ("10.1.2.3", "garbage", ["10.0.0.0/8"], "10.1.2.3"),
        # An IPv6 client counts by its /64 (a host can rotate within it at will).
        ("2001:db8:1:2:aaaa::1", None, [], "2001:db8:1:2::/64"),
        ("::ffff:10.1.2.3", None, [], "10.1.2.3"),
        (None, None, [], "unknown"),
    ],
)
def test_login_client(peer: str | None, forwarded: str | None, trusted: list[str], expected: str) -> None:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    scope = {"type": "http", "method": "POST", "path": "/console/login", "headers": headers, "query_string": b""}
    scope["client"] = (peer, 1234) if peer else None
    networks = [ipaddress.ip_network(t) for t in trusted]
    assert login_client(Request(scope), networks) == expected  # type: ignore[arg-type]
