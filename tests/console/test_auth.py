"""Login, lockout, logout, and CSRF refusals."""

from __future__ import annotations

from tests.console.conftest import PASSWORD, Console


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
    b = console.browser()
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
    b = console.browser()
    email = console.emails["admin_a"]
    for _ in range(9):
        assert (await b.login(email, "wrong password!")).status_code == 401
    tenth = await b.login(email, "wrong password!")
    assert tenth.status_code == 429 and "Too many failed sign-ins" in tenth.text
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
