"""``posegen config``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from posegen.cli.app import state


def show_config(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Print the effective settings, secrets masked."""
    values = state(ctx).settings.masked()
    if as_json:
        typer.echo(json.dumps(values, indent=2, default=str))
        return
    width = max(len(k) for k in values)
    for key, value in values.items():
        typer.echo(f"POSEGEN_{key.upper():<{width}} = {'' if value is None else value}")
