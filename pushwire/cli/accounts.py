"""console-user commands."""

from __future__ import annotations

import sys

import click

from pushwire.cli.common import emit, json_option, run_async, settings_or_exit


@click.group("console-user", help="Console accounts.")
def console_user() -> None: ...


@console_user.command("create")
@click.option("--email", required=True)
@click.option("--role", required=True, type=click.Choice(["operator", "tenant_admin", "tenant_viewer"]))
@click.option("--tenant", "tenant_id", default=None, help="Required for tenant roles.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (required).")
@json_option
def console_user_create(email: str, role: str, tenant_id: str | None, password_stdin: bool, as_json: bool) -> None:
    if not password_stdin:
        raise click.UsageError("pass --password-stdin and the password on standard input (never as an argument)")
    password = sys.stdin.readline().rstrip("\n")
    account = run_async(settings_or_exit(), lambda s: s.accounts.create_user(email, password, role, tenant_id))
    emit(account, as_json)
