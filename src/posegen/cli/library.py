"""``posegen library``: the built-in pose library and imports of operators' poses."""

from __future__ import annotations

import json
from pathlib import Path
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


@app.command("import")
def import_(
    ctx: typer.Context,
    source: Annotated[
        Path,
        typer.Argument(
            help="A JSON file (one pose, a list, or {categories, poses}) or a folder of them."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Import keypoint poses, idempotent by slug; each file is all or nothing.

    Every pose is checked (pose schema, anatomical plausibility, fields) before anything is
    written; a file with a bad entry is refused whole and each bad entry is named. Exit 1 when
    any file was refused."""
    from posegen.library.importer import import_library

    report = import_library(state(ctx).engine, source)
    if as_json:
        typer.echo(json.dumps({"ok": report.ok, "files": [f.to_json() for f in report.files]}))
    else:
        for f in report.files:
            if f.imported:
                typer.echo(
                    f"imported {f.path}: {f.poses} poses ({f.created} created, {f.updated} "
                    f"updated, {f.unchanged} unchanged)"
                )
            else:
                typer.echo(f"refused  {f.path}: nothing imported from this file", err=True)
                for error in f.errors:
                    typer.echo(f"  error: {error}", err=True)
        done = [f for f in report.files if f.imported]
        typer.echo(
            f"pose import: {len(done)} of {len(report.files)} files imported; "
            f"{report.total('created')} created, {report.total('updated')} updated, "
            f"{report.total('unchanged')} unchanged"
        )
    if not report.ok:
        raise typer.Exit(1)
