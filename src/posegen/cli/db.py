"""``posegen db``: migrations and index verification."""

from __future__ import annotations

from typing import Annotated

import typer

from posegen.cli.app import state
from posegen.db import migrate
from posegen.db.verify import verify as run_verify

app = typer.Typer(help="Database schema: migrate, inspect, verify indexes.", no_args_is_help=True)


@app.command()
def upgrade(
    ctx: typer.Context, revision: Annotated[str, typer.Argument(help="Target.")] = "head"
) -> None:
    """Apply migrations up to REVISION (default: head)."""
    st = state(ctx)
    engine = st.engine
    migrate.upgrade(engine, revision, uploads_dir=st.settings.effective_uploads_dir)
    typer.echo(f"database at {migrate.current(engine)}")


@app.command()
def downgrade(ctx: typer.Context, revision: Annotated[str, typer.Argument()]) -> None:
    """Revert migrations down to REVISION ("base" removes everything)."""
    st = state(ctx)
    engine = st.engine
    migrate.downgrade(engine, revision, uploads_dir=st.settings.effective_uploads_dir)
    typer.echo(f"database at {migrate.current(engine) or 'base'}")


@app.command()
def current(ctx: typer.Context) -> None:
    """Print the current revision and the head."""
    rev = migrate.current(state(ctx).engine)
    typer.echo(f"current: {rev or 'base'}  head: {migrate.head_revision()}")


@app.command()
def verify(ctx: typer.Context) -> None:
    """Check every index the code relies on exists and (PostgreSQL) the hot plans use it."""
    report = run_verify(state(ctx).engine)
    for check in report.checks:
        typer.echo(f"{'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
    if not report.ok:
        raise typer.Exit(1)
