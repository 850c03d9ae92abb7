"""``posegen prune``: apply the retention settings and sweep orphan files, now."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from posegen.cli.app import state


def prune(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Delete what the POSEGEN_RETENTION_* settings let go (old events, old unkept generations
    with their results, unreferenced uploads) and stored files no row names (older than
    POSEGEN_ORPHAN_GRACE_SECONDS); prints counts and bytes. Exit 1 if a store refused."""
    from posegen import retention

    st = state(ctx)
    report = retention.prune(st.engine, st.settings, dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        for line in report.lines():
            typer.echo(line)
    if report.errors:
        raise typer.Exit(1)
