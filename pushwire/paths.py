"""Where the package's data is: Alembic's migrations/ and the served static/ assets.

A built package (wheel, `pip install .`) carries them inside: pushwire/migrations and
pushwire/static, copied from the repository's top-level folders at build time (setup.py), with
htmx fetched into static/vendor. A source checkout or an editable install has them at the
repository's top level, beside the package. Never the working directory: the `pushwire` command
must behave the same wherever it is started.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import IO, Any

import click

HTMX = Path("vendor") / "htmx.min.js"


class MissingAsset(click.ClickException):
    """A file the package needs is not installed.

    A ClickException so that, raised anywhere under the `pushwire` command (create_app runs
    inside `pushwire run`, before the port is bound), it is printed as one line with exit code 2,
    like the CLI's other start-up errors.
    """

    exit_code = 2

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"pushwire: {self.message}", err=True, file=file)


def _data_dir(name: str, marker: str) -> Path:
    packaged = files("pushwire") / name
    if isinstance(packaged, Path) and (packaged / marker).is_file():
        return packaged
    checkout = Path(__file__).resolve().parent.parent / name
    if (checkout / marker).is_file():
        return checkout
    raise MissingAsset(
        f"{name}/ is not installed (looked in {packaged} and {checkout}): reinstall pushwire (`pip install .`)"
    )


def migrations_dir() -> Path:
    """Alembic's script location (env.py and versions/)."""
    return _data_dir("migrations", "env.py")


def static_dir() -> Path:
    """What /static serves: pushwire.js, console.css and vendor/htmx.min.js."""
    return _data_dir("static", "pushwire.js")


def require_htmx() -> Path:
    """The console's htmx, or MissingAsset saying how to get it: without it every page loads
    but no button or form works, so refusing to start beats serving a silently broken console."""
    htmx = static_dir() / HTMX
    if not htmx.is_file():
        raise MissingAsset(
            f"the console's htmx is missing ({htmx}): in a source checkout run `make install`; "
            "otherwise rebuild the package where npm can reach the npm registry "
            "(the build fetches htmx.org at the version pinned in package.json)"
        )
    return htmx


__all__ = ["HTMX", "MissingAsset", "migrations_dir", "require_htmx", "static_dir"]
