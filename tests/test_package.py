"""The built package runs from any directory: migrations, static assets and htmx are package data.

The project is built as a user would get it (sdist from the tracked files, wheel from the sdist),
installed into a fresh virtualenv (--no-deps: the dev venv's site-packages are reached through a
.pth, so nothing is downloaded), and driven from an empty directory: `pushwire database upgrade`,
`pushwire run`, and the console's login page in Chromium with htmx loaded. A wheel built where
htmx cannot be had (no npm, no node_modules) makes `pushwire run` refuse with one line, exit 2.
An editable install (what `make install` does) finds the checkout's folders.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tarfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from playwright.sync_api import sync_playwright
from sqlalchemy.ext.asyncio import create_async_engine

from tests.services import MYSQL_SERVER_URL, REDIS_URL, unique

REPO = Path(__file__).resolve().parents[1]
HTMX_VERSION = json.loads((REPO / "package.json").read_text())["dependencies"]["htmx.org"]
SECRET = "package-test-secret-0123456789"
BUILD_TIMEOUT = 300
# Debian's Chromium, launched as tests/browser/conftest.py does (not imported: this module
# imports nothing of pushwire, it drives the installed package in subprocesses).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sh(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = BUILD_TIMEOUT) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def source_tree(dest: Path) -> Path:
    """What a commit would hold: tracked files and new ones git does not ignore (no static/vendor)."""
    listed = sh("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO)
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


def build_wheel(sdist: Path, work: Path, *, htmx_available: bool) -> Path:
    """pip wheel from the unpacked sdist. With htmx: node_modules/htmx.org as `npm install` leaves it
    (or npm itself, when the checkout has none). Without: no node_modules and no npm on PATH."""
    with tarfile.open(sdist) as tar:
        tar.extractall(work, filter="data")
    (unpacked,) = work.iterdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    if htmx_available and (REPO / "node_modules" / "htmx.org").is_dir():
        shutil.copytree(REPO / "node_modules" / "htmx.org", unpacked / "node_modules" / "htmx.org")
    elif not htmx_available:
        (work / "empty-bin").mkdir()
        env["PATH"] = str(work / "empty-bin")
    out = work / "dist"
    pip = (sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, unpacked)
    sh(*pip, cwd=work, env=env)
    (wheel,) = out.glob("pushwire-*.whl")
    return wheel


def new_venv(path: Path, *install: str | Path) -> Path:
    """A virtualenv with `install` (pip arguments), then the dev venv's site-packages on its path.
    (An editable install builds in pip's isolated environment: the new venv has no setuptools.)"""
    sh(sys.executable, "-m", "venv", "--without-pip", path, cwd=path.parent)
    python = path / "bin" / "python"
    sh(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", *install, cwd=path.parent)
    site = sh(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=path).strip()
    # After the install, so pip never sees (or touches) the dev venv's editable pushwire.
    (Path(site) / "pushwire-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return path / "bin"


@dataclass
class Built:
    wheel: Path
    wheel_without_htmx: Path
    source: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    source = source_tree(tmp_path_factory.mktemp("src"))
    sdists = tmp_path_factory.mktemp("sdist")
    build_sdist = "import sys; from setuptools import build_meta; build_meta.build_sdist(sys.argv[1])"
    sh(sys.executable, "-c", build_sdist, sdists, cwd=source)
    (sdist,) = sdists.glob("pushwire-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"migrations/env.py", "static/pushwire.js", "package.json", "package-lock.json", "setup.py"} <= names
    assert not any(n.startswith(("static/vendor", "node_modules")) for n in names)
    return Built(
        wheel=build_wheel(sdist, tmp_path_factory.mktemp("with-htmx"), htmx_available=True),
        wheel_without_htmx=build_wheel(sdist, tmp_path_factory.mktemp("no-htmx"), htmx_available=False),
        source=source,
    )


async def _mariadb(sql: str) -> None:
    engine = create_async_engine(MYSQL_SERVER_URL + "/", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(sql))
    finally:
        await engine.dispose()


@pytest.fixture(params=["single", "mariadb+redis"])
def server_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a `pushwire` command: a blank database of each backend set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PUSHWIRE_", "PYTHON", "VIRTUAL_ENV"))}
    env["PUSHWIRE_SECRET_KEY"] = SECRET
    if request.param == "single":
        env["PUSHWIRE_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'pushwire.db'}"
        yield env
        return
    name = unique("pwpkg_")
    asyncio.run(_mariadb(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    env["PUSHWIRE_DATABASE_URL"] = f"{MYSQL_SERVER_URL}/{name}"
    env["PUSHWIRE_CACHE_URL"] = REDIS_URL
    try:
        yield env
    finally:
        asyncio.run(_mariadb(f"DROP DATABASE IF EXISTS {name}"))


def empty_dir(tmp_path: Path) -> Path:
    """Where the commands run: nothing of the project here, nor on sys.path."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir(exist_ok=True)
    return cwd


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


Serve = Callable[[Path, dict[str, str]], str]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    """`pushwire run` from an empty directory on a free port, until /health answers; stopped after."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(bin_dir: Path, env: dict[str, str]) -> str:
        port = free_port()
        log = tmp_path / f"server-{port}.log"
        with log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [bin_dir / "pushwire", "run", "--port", str(port)],
                    cwd=empty_dir(tmp_path),
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert procs[-1].poll() is None, f"server exited {procs[-1].returncode}: {log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as res:
                    if res.status == 200:
                        return f"http://127.0.0.1:{port}"
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"no answer on /health in 90 s: {log.read_text()[-3000:]}")

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def assert_console_has_htmx(base: str) -> None:
    """The login page in Chromium: htmx (the pinned version) and console.css load under the CSP."""
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            response = page.goto(f"{base}/console/login")
            assert response is not None and response.status == 200
            page.wait_for_load_state("load")
            assert page.evaluate("typeof window.htmx") == "object", errors
            assert page.evaluate("window.htmx.version") == HTMX_VERSION
            assert page.evaluate("[...document.styleSheets].some(s => s.cssRules.length > 0)")
        finally:
            browser.close()
    assert not errors, errors


def test_wheel_carries_migrations_static_and_htmx(built: Built) -> None:
    names = wheel_names(built.wheel)
    expected = {f"pushwire/migrations/versions/{p.name}" for p in (REPO / "migrations" / "versions").glob("*.py")}
    expected |= {"pushwire/migrations/env.py", "pushwire/migrations/script.py.mako"}
    expected |= {"pushwire/static/pushwire.js", "pushwire/static/console.css", "pushwire/static/vendor/htmx.min.js"}
    assert expected <= names, sorted(expected - names)
    assert "pushwire/static/vendor/htmx.min.js" not in wheel_names(built.wheel_without_htmx)


def test_installed_wheel_migrates_and_serves_the_console_from_anywhere(
    built: Built, server_env: dict[str, str], serve: Serve, tmp_path: Path
) -> None:
    bin_dir = new_venv(tmp_path / "venv", built.wheel)
    cwd = empty_dir(tmp_path)
    where = sh(bin_dir / "python", "-c", "import pushwire; print(pushwire.__file__)", cwd=cwd)
    assert where.startswith(str(tmp_path / "venv")), f"pushwire imported from {where}"
    sh(bin_dir / "pushwire", "database", "upgrade", cwd=cwd, env=server_env)
    base = serve(bin_dir, server_env)
    with urllib.request.urlopen(f"{base}/static/pushwire.js", timeout=10) as res:
        assert res.read() == (REPO / "static" / "pushwire.js").read_bytes()
    assert_console_has_htmx(base)
    assert list(cwd.iterdir()) == [], "the commands wrote into the working directory"


def test_run_refuses_without_htmx_in_one_line(built: Built, server_env: dict[str, str], tmp_path: Path) -> None:
    bin_dir = new_venv(tmp_path / "venv", built.wheel_without_htmx)
    cwd = empty_dir(tmp_path)
    sh(bin_dir / "pushwire", "database", "upgrade", cwd=cwd, env=server_env)  # migrations need no htmx
    port = free_port()
    done = subprocess.run(
        [bin_dir / "pushwire", "run", "--port", str(port)],
        cwd=cwd,
        env=server_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("pushwire: the console's htmx is missing"), lines[0]
    assert "make install" in lines[0] and "npm" in lines[0]
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the port was bound"


def test_editable_install_finds_the_checkouts_folders(
    built: Built, server_env: dict[str, str], serve: Serve, tmp_path: Path
) -> None:
    """`pip install -e` (make install) reads migrations/ and static/ (htmx from make) in the checkout."""
    source = tmp_path / "checkout"
    shutil.copytree(built.source, source)
    (source / "static" / "vendor").mkdir()
    shutil.copy2(REPO / "static" / "vendor" / "htmx.min.js", source / "static" / "vendor" / "htmx.min.js")
    bin_dir = new_venv(tmp_path / "venv", "-e", source)
    cwd = empty_dir(tmp_path)
    found = sh(
        bin_dir / "python",
        "-c",
        "from pushwire.paths import migrations_dir, require_htmx; print(migrations_dir()); print(require_htmx())",
        cwd=cwd,
    ).split()
    assert found == [str(source / "migrations"), str(source / "static" / "vendor" / "htmx.min.js")]
    sh(bin_dir / "pushwire", "database", "upgrade", cwd=cwd, env=server_env)
    assert_console_has_htmx(serve(bin_dir, server_env))
