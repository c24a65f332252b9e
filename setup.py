"""Build hook: the package carries its data, so an installed `pushwire` runs from any directory.

The repository keeps migrations/ and static/ at the top level; building a wheel copies them into
the package (pushwire/migrations, pushwire/static) and puts htmx, pinned in package.json, into
pushwire/static/vendor. htmx comes from the npm registry: the copy `npm install` left in
node_modules/ when it is the pinned version, else `npm pack htmx.org@<pin>` (checked against
package-lock.json's integrity). With neither (no npm, no network) the build still succeeds
without it, and `pushwire run` refuses to start, saying how to get it (pushwire.paths).

An editable install (`pip install -e .`, what `make install` does) copies nothing: it reads the
checkout's folders, where `make install` puts htmx.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PACKAGE = "pushwire"
DATA_DIRS = ("migrations", "static")
HTMX_PACKAGE = "htmx.org"
HTMX_IN_TARBALL = "package/dist/htmx.min.js"
HTMX_TARGET = Path("static") / "vendor" / "htmx.min.js"
EXACT_VERSION = re.compile(r"\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?")  # what npm resolves to one tarball
NPM_TIMEOUT = 180  # seconds; offline, npm retries for minutes before giving up

log = logging.getLogger("pushwire.build")


class HtmxError(Exception):
    """The pinned htmx could not be had; the message says why."""


def pinned_htmx(root: Path = ROOT) -> tuple[str, str | None]:
    """(version, integrity): the exact version package.json pins, and package-lock.json's
    Subresource Integrity string for that version's tarball (None without a matching lock entry)."""
    deps = json.loads((root / "package.json").read_text()).get("dependencies", {})
    version = deps.get(HTMX_PACKAGE)
    if not isinstance(version, str) or not EXACT_VERSION.fullmatch(version):
        raise HtmxError(f"package.json must pin {HTMX_PACKAGE} to an exact version, not {version!r}")
    lock_path = root / "package-lock.json"
    integrity = None
    if lock_path.is_file():
        entry = json.loads(lock_path.read_text()).get("packages", {}).get(f"node_modules/{HTMX_PACKAGE}", {})
        if entry.get("version") == version:
            integrity = entry.get("integrity")
    return version, integrity


def check_integrity(data: bytes, integrity: str) -> None:
    """Subresource Integrity ("sha512-<base64>"), as npm records it in package-lock.json."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm not in {"sha256", "sha384", "sha512"} or not expected:
        raise HtmxError(f"unsupported integrity string {integrity!r}")
    actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if actual != expected:
        raise HtmxError(f"{HTMX_PACKAGE} tarball does not match package-lock.json's integrity ({integrity})")


def htmx_from_tarball(data: bytes) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        try:
            member = tar.extractfile(HTMX_IN_TARBALL)
        except KeyError:
            member = None
        if member is None:
            raise HtmxError(f"{HTMX_IN_TARBALL} is not in the {HTMX_PACKAGE} tarball")
        return member.read()


def htmx_from_node_modules(root: Path, version: str) -> bytes | None:
    """What `npm install` fetched into the checkout, when it is the pinned version."""
    package = root / "node_modules" / HTMX_PACKAGE
    try:
        installed = json.loads((package / "package.json").read_text()).get("version")
    except (OSError, ValueError):
        return None
    dist = package / "dist" / "htmx.min.js"
    return dist.read_bytes() if installed == version and dist.is_file() else None


def htmx_from_npm(version: str, integrity: str | None, npm: str | None = None) -> bytes:
    """`npm pack htmx.org@<version>`: the registry's tarball, without installing anything."""
    npm = npm or shutil.which("npm")
    if not npm:
        raise HtmxError("npm is not on PATH")
    with tempfile.TemporaryDirectory(prefix="pushwire-htmx-") as tmp:
        try:
            done = subprocess.run(
                [npm, "pack", f"{HTMX_PACKAGE}@{version}", "--json", "--silent", "--pack-destination", tmp],
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise HtmxError(f"npm pack failed: {exc}") from None
        tarballs = list(Path(tmp).glob("*.tgz"))
        if done.returncode != 0 or len(tarballs) != 1:
            detail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            raise HtmxError(f"npm pack {HTMX_PACKAGE}@{version} failed: {detail}")
        data = tarballs[0].read_bytes()
    if integrity:
        check_integrity(data, integrity)
    return htmx_from_tarball(data)


def fetch_htmx(root: Path = ROOT) -> bytes:
    version, integrity = pinned_htmx(root)
    return htmx_from_node_modules(root, version) or htmx_from_npm(version, integrity)


class BuildPyWithData(build_py):
    """build_py, then the top-level data folders and htmx into the built package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / PACKAGE
        for name in DATA_DIRS:
            # Start clean: an earlier in-tree build may have left files (an htmx) in build/.
            shutil.rmtree(target / name, ignore_errors=True)
            shutil.copytree(ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "vendor"))
        try:
            htmx = fetch_htmx(ROOT)
        except HtmxError as exc:
            log.warning("building without htmx (`pushwire run` will refuse to start): %s", exc)
            return
        (target / HTMX_TARGET).parent.mkdir(parents=True, exist_ok=True)
        (target / HTMX_TARGET).write_bytes(htmx)


if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildPyWithData})
