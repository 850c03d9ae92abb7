"""``posegen users``: accounts and API keys."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from posegen import accounts
from posegen.cli.app import state
from posegen.db.models import Role
from posegen.exceptions import InvalidInput

app = typer.Typer(help="Users and API keys.", no_args_is_help=True)


@app.command()
def create(
    ctx: typer.Context,
    name: str,
    email: str,
    admin: Annotated[bool, typer.Option("--admin", help="Give the admin role.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Create a user and print a new API key (shown once; only its hash is stored)."""
    new = accounts.create_user(state(ctx).engine, name, email, Role.ADMIN if admin else Role.USER)
    _print_key(new, as_json)


@app.command("issue-key")
def issue_key(
    ctx: typer.Context,
    email: str,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Give an existing user another API key."""
    _print_key(accounts.issue_key(state(ctx).engine, email), as_json)


@app.command("list")
def list_(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List users with their role and number of active keys."""
    rows = accounts.list_users(state(ctx).engine)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "id": r.account.id,
                        "name": r.account.name,
                        "email": r.account.email,
                        "role": r.account.role.value,
                        "activeKeys": r.active_keys,
                    }
                    for r in rows
                ]
            )
        )
        return
    for r in rows:
        a = r.account
        typer.echo(f"{a.id:>6}  {a.role.value:<5}  {a.email:<40} {a.name}  keys={r.active_keys}")


@app.command("revoke-key")
def revoke_key(
    ctx: typer.Context,
    email: Annotated[str | None, typer.Option(help="Revoke every key of this user.")] = None,
    prefix: Annotated[
        str | None, typer.Option(help="Revoke the key starting with this (first 10 chars).")
    ] = None,
) -> None:
    """Revoke API keys, by user or by key prefix."""
    if (email is None) == (prefix is None):
        raise InvalidInput("give exactly one of --email or --prefix")
    count = accounts.revoke_keys(state(ctx).engine, email=email, prefix=prefix)
    typer.echo(f"revoked {count} key(s)")


def _print_key(new: accounts.NewKey, as_json: bool) -> None:
    a = new.account
    if as_json:
        typer.echo(
            json.dumps({"id": a.id, "email": a.email, "role": a.role.value, "apiKey": new.api_key})
        )
        return
    typer.echo(f"user {a.id} {a.email} ({a.role.value})")
    typer.echo(f"API key (shown once, store it now): {new.api_key}")
