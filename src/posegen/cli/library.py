"""``posegen library``: the built-in pose library."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from posegen.cli.app import state
from posegen.library import sync_library

app = typer.Typer(help="The pose library.", no_args_is_help=True)


@app.command()
def seed(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Load the built-in categories and poses (idempotent; works offline)."""
    report = sync_library(state(ctx).engine)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "categories": report.categories,
                    "poses": report.poses,
                    "created": report.created,
                    "updated": report.updated,
                }
            )
        )
        return
    typer.echo(
        f"pose library: {report.categories} categories, {report.poses} poses "
        f"({report.created} rows created, {report.updated} updated)"
    )
