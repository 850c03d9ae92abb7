"""``posegen models check``: validate the configured model and time it (docs/models.md)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from posegen.backends import REAL_MODEL_HINT
from posegen.cli.app import state
from posegen.exceptions import PosegenError

app = typer.Typer(help="The image model a worker would load.", no_args_is_help=True)


@app.command()
def check(
    ctx: typer.Context,
    width: Annotated[int, typer.Option(min=64, max=2048, help="Smoke render width.")] = 256,
    height: Annotated[int, typer.Option(min=64, max=2048, help="Smoke render height.")] = 256,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Check the configured model (files, dtype, device), render one small image at 1 and 3
    steps, and print what was found and the time per step. One line and exit 1 on a problem."""
    from posegen.generators.check import check_model

    settings = state(ctx).settings
    try:
        report = check_model(settings, width, height)
    except PosegenError as exc:
        # A wrong setting is as much a failed check as a failed render: exit 1, one line.
        raise PosegenError(f"model check failed: {exc.message}", kind="model-check") from exc
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
        return
    typer.echo(f"backend: {report.backend}")
    for what, detail in report.found:
        typer.echo(f"{what}: {detail}")
    if report.preview:
        typer.echo(f"ok: nothing to load; for real images {REAL_MODEL_HINT}")
        return
    typer.echo(f"device: {report.device or 'n/a'}  dtype: {report.dtype or 'n/a'}")
    typer.echo(
        f"smoke render {report.size[0]}x{report.size[1]}: 1 step in "
        f"{report.one_step_seconds:.2f} s, {report.seconds_per_step:.3f} s per further step"
    )
    typer.echo("ok")
