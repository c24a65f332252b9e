"""The `pushwire` command line."""

from __future__ import annotations

import click

from pushwire.cli import changes  # noqa: F401 - adds app limits/enable/disable, tenant and client-key switches
from pushwire.cli.accounts import console_user
from pushwire.cli.config import config
from pushwire.cli.server import database, demo, relay, run
from pushwire.cli.tenancy import app, client_key, key, tenant, token


@click.group(help="Pushwire: durable, gap-free real-time push.")
@click.version_option(package_name="pushwire")
def cli() -> None: ...


for command in (run, relay, database, demo, tenant, app, key, client_key, token, console_user, config):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="pushwire")


if __name__ == "__main__":
    main()
