"""setup.py's htmx step: the version pinned in package.json, from node_modules or `npm pack`,
checked against package-lock.json's integrity; bad pins and tarballs are refused, never guessed."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
import json
import shutil
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_setup() -> ModuleType:
    # Imported under another name, setup.py defines its helpers without calling setup().
    spec = importlib.util.spec_from_file_location("pushwire_setup", REPO / "setup.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build = _load_setup()
PINNED = json.loads((REPO / "package.json").read_text())["dependencies"]["htmx.org"]
LOCKED = json.loads((REPO / "package-lock.json").read_text())["packages"]["node_modules/htmx.org"]["integrity"]


def tarball(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def sri(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def project(tmp_path: Path, pin: object, lock_version: str | None = None) -> Path:
    (tmp_path / "package.json").write_text(json.dumps({"dependencies": {"htmx.org": pin}}))
    if lock_version:
        lock = {"packages": {"node_modules/htmx.org": {"version": lock_version, "integrity": "sha512-abc"}}}
        (tmp_path / "package-lock.json").write_text(json.dumps(lock))
    return tmp_path


def test_the_pin_and_its_integrity_come_from_package_json_and_the_lock() -> None:
    assert build.pinned_htmx(REPO) == (PINNED, LOCKED)


def test_a_lock_for_another_version_gives_no_integrity(tmp_path: Path) -> None:
    assert build.pinned_htmx(project(tmp_path, "2.0.4", lock_version="2.0.3")) == ("2.0.4", None)
    assert build.pinned_htmx(project(tmp_path, "2.0.4", lock_version="2.0.4")) == ("2.0.4", "sha512-abc")


@pytest.mark.parametrize("pin", ["^2.0.4", "~2.0.4", ">=2", "2.x", "latest", "", "2.0", " 2.0.4", 204, None])
def test_a_pin_that_is_not_one_exact_version_is_refused(tmp_path: Path, pin: object) -> None:
    with pytest.raises(build.HtmxError, match="exact version"):
        build.pinned_htmx(project(tmp_path, pin))


def test_integrity_is_checked() -> None:
    data = b"tarball bytes"
    build.check_integrity(data, sri(data))
    with pytest.raises(build.HtmxError, match="does not match"):
        build.check_integrity(data + b"!", sri(data))
    for bad in ("md5-abc", "sha512-", "nonsense"):
        with pytest.raises(build.HtmxError, match="unsupported integrity"):
            build.check_integrity(data, bad)


def test_the_file_is_taken_from_the_tarball_or_refused() -> None:
    assert build.htmx_from_tarball(tarball({"package/dist/htmx.min.js": b"var htmx"})) == b"var htmx"
    with pytest.raises(build.HtmxError, match="is not in"):
        build.htmx_from_tarball(tarball({"package/dist/htmx.js": b"var htmx"}))


def test_node_modules_only_at_the_pinned_version(tmp_path: Path) -> None:
    package = tmp_path / "node_modules" / "htmx.org"
    (package / "dist").mkdir(parents=True)
    (package / "dist" / "htmx.min.js").write_bytes(b"var htmx")
    (package / "package.json").write_text(json.dumps({"version": "2.0.3"}))
    assert build.htmx_from_node_modules(tmp_path, "2.0.4") is None
    (package / "package.json").write_text(json.dumps({"version": "2.0.4"}))
    assert build.htmx_from_node_modules(tmp_path, "2.0.4") == b"var htmx"
    (package / "package.json").write_text("{not json")
    assert build.htmx_from_node_modules(tmp_path, "2.0.4") is None


def test_npm_pack_fetches_the_pinned_version_from_the_registry() -> None:
    """The path a build takes without node_modules (the npm registry is reachable here)."""
    assert shutil.which("npm"), "npm is needed to build the package with htmx (make install uses it too)"
    htmx = build.htmx_from_npm(PINNED, LOCKED)
    assert f'version:"{PINNED}"' in htmx.decode()


def test_npm_pack_refuses_a_tarball_that_is_not_the_locked_one() -> None:
    with pytest.raises(build.HtmxError, match="does not match"):
        build.htmx_from_npm(PINNED, sri(b"some other tarball"))


def test_npm_failures_are_htmx_errors(tmp_path: Path) -> None:
    with pytest.raises(build.HtmxError, match="npm pack"):
        build.htmx_from_npm("0.0.0-no-such-version", None)
    with pytest.raises(build.HtmxError, match="npm pack failed"):
        build.htmx_from_npm(PINNED, None, npm=str(tmp_path / "no-npm-here"))
