"""Every third-party module that pushwire/ imports is a declared runtime dependency.

A dev-only dependency (installed in the dev venv, so every other test passes) that the package
imports breaks `pip install pushwire` users: this reads the imports of pushwire/**/*.py and the
requirements in pyproject.toml's [project].dependencies, and finds the distribution of each import
among the installed ones. Only direct requirements count: a module that arrives through another
requirement (or one of its extras) can disappear with that requirement's next release.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import re
import sys
import tomllib
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = "pushwire"


def canonical(name: str) -> str:
    """PEP 503 name normalisation (PyJWT == pyjwt, jinja2 == Jinja2)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(requirements: Iterable[str]) -> set[str]:
    """Distribution names of PEP 508 strings, without extras, versions or markers."""
    names = set()
    for requirement in requirements:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
        assert match, f"not a PEP 508 requirement: {requirement!r}"
        names.add(canonical(match.group(1)))
    return names


def declared_runtime_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return requirement_names(project.get("dependencies", []))


def imported_modules(source: str, filename: str = "<source>") -> Iterator[str]:
    """Absolute imports of a module's source (relative ones are first-party by definition)."""
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def third_party(modules: Iterable[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] not in sys.stdlib_module_names and m.split(".")[0] != FIRST_PARTY}


@cache
def _file_owners() -> dict[Path, str]:
    owners: dict[Path, str] = {}
    for dist in md.distributions():
        for file in dist.files or ():
            owners[Path(str(dist.locate_file(file))).resolve()] = canonical(dist.metadata["Name"])
    return owners


def distributions_of(module: str) -> set[str]:
    """The installed distribution(s) providing `module`; the file that defines it decides when a
    top-level name is a namespace shared by several (opentelemetry.trace is opentelemetry-api's)."""
    top = module.split(".")[0]
    candidates = {canonical(d) for d in md.packages_distributions().get(top, [])}
    if len(candidates) <= 1:
        return candidates
    try:
        spec = importlib.util.find_spec(module)
    except ImportError:
        spec = None
    origin = spec.origin if spec else None
    if origin and (owner := _file_owners().get(Path(origin).resolve())):
        return {owner}
    return candidates


def undeclared(modules: Iterable[str], declared: set[str]) -> dict[str, set[str]]:
    """module -> the distributions that provide it, for modules no declared requirement provides
    (an empty set: no installed distribution provides it at all)."""
    missing = {}
    for module in sorted(third_party(modules)):
        dists = distributions_of(module)
        if not dists & declared:
            missing[module] = dists
    return missing


def package_imports() -> dict[str, list[str]]:
    """module -> the pushwire/ files importing it."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / FIRST_PARTY).rglob("*.py")):
        for module in imported_modules(path.read_text(), str(path)):
            found.setdefault(module, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_a_declared_runtime_dependency() -> None:
    imports = package_imports()
    missing = undeclared(imports, declared_runtime_requirements())
    assert not missing, "imported by pushwire/ but not in [project].dependencies: " + "; ".join(
        f"{module} (from {', '.join(sorted(dists)) or 'no installed distribution'}; imported by {', '.join(imports[module][:3])})"
        for module, dists in missing.items()
    )


def test_the_sdk_dependency_is_declared() -> None:
    """pushwire.sdk.realtime's client needs websockets after a plain `pip install pushwire`."""
    assert "websockets" in declared_runtime_requirements()


SAMPLE = """
import os, json
import websockets
from yaml import safe_load
from . import sibling
from pushwire.settings import Settings
import httpx.transports
import opentelemetry.trace
import not_a_module_anyone_ships_3f9a
"""


def test_the_check_flags_undeclared_imports() -> None:
    """Bad input: dev-only, transitive-only and uninstalled imports are reported; stdlib,
    relative and first-party ones are not; a namespace package is judged by the submodule's owner."""
    declared = requirement_names(["httpx>=0.27", "opentelemetry-sdk[extra]>=1.45 ; python_version>'3'"])
    missing = undeclared(imported_modules(SAMPLE), declared)
    assert set(missing) == {"websockets", "yaml", "opentelemetry.trace", "not_a_module_anyone_ships_3f9a"}
    assert missing["yaml"] == {"pyyaml"}
    assert missing["opentelemetry.trace"] == {"opentelemetry-api"}
    assert missing["not_a_module_anyone_ships_3f9a"] == set()
    assert undeclared(imported_modules(SAMPLE), declared | {"websockets", "pyyaml", "opentelemetry-api"}) == {
        "not_a_module_anyone_ships_3f9a": set()
    }


@pytest.mark.parametrize("bad", ["", "   ", ">=1.0", "[extra]"])
def test_requirement_names_rejects_malformed_requirements(bad: str) -> None:
    with pytest.raises(AssertionError, match="not a PEP 508 requirement"):
        requirement_names([bad])
