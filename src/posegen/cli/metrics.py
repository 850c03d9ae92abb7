"""``posegen metrics``: check or repair the per-user rollup, and print the top users."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from posegen.cli.app import state
from posegen.metrics import rollup
from posegen.metrics.check import check as run_check

app = typer.Typer(help="Usage metrics: rollup check and repair, top users.", no_args_is_help=True)


@app.command()
def check(
    ctx: typer.Context,
    fix: Annotated[
        bool, typer.Option("--fix", help="Rewrite drifted rows from a recount.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Recount user_generation_stats from pose_generations and report drift (exit 1 if any).

    With --fix the drifted rows are rewritten under a lock that queue writers wait for (a
    fraction of a second per million generations), and the command exits 0.
    """
    report = run_check(state(ctx).engine, fix=fix)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        for d in report.drift[:50]:
            have = "no row" if d.actual is None else _counts(d.actual.as_dict())
            typer.echo(
                f"drift  user {d.user_id}: rollup {have}; recount {_counts(d.expected.as_dict())}"
            )
        if len(report.drift) > 50:
            typer.echo(f"... and {len(report.drift) - 50} more")
        verdict = "repaired" if report.fixed else ("ok" if report.ok else "DRIFT")
        typer.echo(f"{verdict}: {report.users_checked} users checked, {len(report.drift)} drifted")
    if not report.ok and not report.fixed:
        raise typer.Exit(1)


@app.command("top-users")
def top_users(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", help="1-100.")] = rollup.DEFAULT_LIMIT,
    as_json: Annotated[bool, typer.Option("--json", help="The API's JSON answer.")] = False,
) -> None:
    """The users with the most generations, from the rollup (as the API answers)."""
    users = rollup.top_users(state(ctx).engine, limit)
    if as_json:
        typer.echo(json.dumps({"users": [u.as_json() for u in users]}))
        return
    for u in users:
        typer.echo(
            f"{u.user_id:>8}  {u.generation_count:>8} gens  {u.total_poses:>9} poses  "
            f"{u.success_rate:>5.2f}  {u.user_email}  {u.user_name}"
        )


def _counts(values: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())
