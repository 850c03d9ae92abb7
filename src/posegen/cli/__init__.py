"""The ``posegen`` command line: thin adapters over the core. Logging is configured only here."""

from __future__ import annotations

import sys

import click
import typer

from posegen.cli import (
    config_cmd,
    credits_cmd,
    db,
    generate,
    library,
    maps,
    metrics,
    serve,
    users,
    worker,
)
from posegen.cli.app import app
from posegen.exceptions import PosegenError

app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(metrics.app, name="metrics")
app.add_typer(maps.app, name="maps")
app.add_typer(library.app, name="library")
app.add_typer(credits_cmd.app, name="credits")
app.command("config")(config_cmd.show_config)
app.command("worker")(worker.worker)
app.command("submit")(worker.submit)
app.command("recover")(worker.recover)
app.command("serve")(serve.serve)
app.command("up")(serve.up)
app.command("generate")(generate.generate)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every error a person can cause ends as one line and a non-zero exit."""
    try:
        # Without standalone mode click hands back the code of ``typer.Exit`` instead of exiting.
        code = app(args=argv, standalone_mode=False)
    except PosegenError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        sys.exit(2 if exc.kind in ("config", "invalid-input") else 1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    if isinstance(code, int) and code != 0:
        sys.exit(code)
