"""The ``posegen`` command line: thin adapters over the core. Logging is configured only here."""

from __future__ import annotations

import sys

import click
import typer

from posegen.cli import (
    config_cmd,
    credits_cmd,
    db,
    export_cmd,
    generate,
    library,
    maps,
    metrics,
    models,
    poses,
    prune,
    requests_cmd,
    serve,
    users,
    worker,
)
from posegen.cli.app import app
from posegen.exceptions import PosegenError

try:  # typer >= 0.2x vendors its own copy of click and raises that copy's exceptions
    from typer._click import exceptions as _vendored

    _CLICK_ERRORS: tuple[type[Exception], ...] = (
        click.ClickException,
        _vendored.ClickException,
    )
    _EXITS: tuple[type[BaseException], ...] = (click.exceptions.Exit, typer.Exit)
    _ABORTS: tuple[type[BaseException], ...] = (
        click.exceptions.Abort,
        typer.Abort,
        KeyboardInterrupt,
    )
except ImportError:  # older typer: click's own exceptions
    _CLICK_ERRORS = (click.ClickException,)
    _EXITS = (click.exceptions.Exit,)
    _ABORTS = (click.exceptions.Abort, KeyboardInterrupt)

app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(metrics.app, name="metrics")
app.add_typer(maps.app, name="maps")
app.add_typer(library.app, name="library")
app.add_typer(models.app, name="models")
app.add_typer(credits_cmd.app, name="credits")
app.add_typer(poses.app, name="poses")
app.add_typer(requests_cmd.app, name="requests")
app.command("config")(config_cmd.show_config)
app.command("worker")(worker.worker)
app.command("submit")(worker.submit)
app.command("recover")(worker.recover)
app.command("serve")(serve.serve)
app.command("up")(serve.up)
app.command("generate")(generate.generate)
app.command("prune")(prune.prune)
app.command("export")(export_cmd.export)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every error a person can cause ends as one line and a non-zero exit."""
    try:
        # Without standalone mode click hands back the code of ``typer.Exit`` instead of exiting.
        code = app(args=argv, standalone_mode=False)
    except PosegenError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        sys.exit(2 if exc.kind in ("config", "invalid-input") else 1)
    except _EXITS as exc:
        sys.exit(getattr(exc, "exit_code", 1))
    except _CLICK_ERRORS as exc:
        typer.echo(f"error: {usage_line(exc)}", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except _ABORTS:
        typer.echo("aborted", err=True)
        sys.exit(130)
    if isinstance(code, int) and code != 0:
        sys.exit(code)


def usage_line(exc: Exception) -> str:
    """One line for a usage error: what was wrong and where to find help (never a traceback).

    A bare group (``posegen``, ``posegen db``) raises an error whose message is the whole help
    page; it is told in one line as a missing command instead.
    """
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or "posegen"
    hint = f" (try '{path} --help')"
    if type(exc).__name__ == "NoArgsIsHelpError":
        return "missing command" + hint
    format_message = getattr(exc, "format_message", None)
    message = format_message() if callable(format_message) else str(exc)
    first = str(message).strip().splitlines()[0] if str(message).strip() else "usage error"
    return first + hint
