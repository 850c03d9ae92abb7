"""``posegen credits``: grant, read a balance or a ledger, and check balances against the ledger."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated

import typer

from posegen import accounts, credits
from posegen.cli.app import state
from posegen.db.models import CreditKind

app = typer.Typer(
    help="Credits: grants, balances, ledgers, the balance check.", no_args_is_help=True
)


@app.command()
def check(
    ctx: typer.Context,
    fix: Annotated[
        bool, typer.Option("--fix", help="Set drifted balances to their ledger's sum.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Compare every user's balance with the sum of their ledger (exit 1 on drift).

    With --fix drifted balances are set to the ledger's sum (the ledger is the record) under
    the users' row locks, and the command exits 0. The hourly credit rollup behind the admin
    metrics is checked against the ledger too (--fix rebuilds a drifted user's from it), and
    so is each quota plan's daily count of poses (quota_usage) against that day's pose rows
    (--fix sets the count to what the ledger says).
    """
    found = credits.check(state(ctx).engine, fix=fix)
    hourly = credits.hourly.check(state(ctx).engine, fix=fix)
    days = credits.quota_ledger.check(state(ctx).engine, fix=fix)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": not found and not hourly and not days,
                    "fixed": fix and bool(found or hourly or days),
                    "drift": [
                        {"userId": m.user_id, "balance": m.balance, "ledgerSum": m.ledger_sum}
                        for m in found
                    ],
                    "hourlyDrift": [
                        {
                            "userId": h.user_id,
                            "charged": h.charged,
                            "refunded": h.refunded,
                            "ledgerCharged": h.ledger_charged,
                            "ledgerRefunded": h.ledger_refunded,
                        }
                        for h in hourly
                    ],
                    "quotaDrift": [
                        {
                            "userId": d.user_id,
                            "day": d.day.isoformat(),
                            "counted": d.counted,
                            "ledgered": d.ledgered,
                        }
                        for d in days
                    ],
                }
            )
        )
    else:
        for m in found[:50]:
            typer.echo(
                f"drift  user {m.user_id} {m.email}: balance {m.balance}, ledger {m.ledger_sum}"
            )
        if len(found) > 50:
            typer.echo(f"... and {len(found) - 50} more")
        for h in hourly[:50]:
            typer.echo(
                f"rollup drift  user {h.user_id}: hourly charged {h.charged} refunded "
                f"{h.refunded}, ledger charged {h.ledger_charged} refunded {h.ledger_refunded}"
            )
        for d in days[:50]:
            typer.echo(
                f"quota drift  user {d.user_id} on {d.day}: counted {d.counted} poses, "
                f"ledger {d.ledgered}"
            )
        verdict = "ok" if not (found or hourly or days) else ("repaired" if fix else "DRIFT")
        typer.echo(
            f"{verdict}: {len(found)} balances differ from their ledger, "
            f"{len(hourly)} hourly credit rollups differ from it, "
            f"{len(days)} quota days differ from it"
        )
    if (found or hourly or days) and not fix:
        raise typer.Exit(1)


@app.command()
def grant(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The user's email.")],
    amount: Annotated[int, typer.Argument(help="Credits to add (negative with --adjust).")],
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (kept in the ledger).")
    ] = None,
    adjust: Annotated[
        bool, typer.Option("--adjust", help="An adjustment (may be negative), not a grant.")
    ] = False,
) -> None:
    """Add credits to a user's balance, ledgered with the reason. A negative amount goes
    after ``--`` (``credits grant --adjust EMAIL -- -15``)."""
    engine = state(ctx).engine
    user = accounts.get_by_email(engine, email)
    kind = CreditKind.ADJUSTMENT if adjust else CreditKind.GRANT
    balance, _ = credits.grant(engine, user.id, amount, kind=kind, reason=reason)
    typer.echo(f"{email}: {amount:+d} ({kind.value}); balance {balance}")


@app.command()
def balance(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The user's email.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """A user's balance."""
    engine = state(ctx).engine
    user = accounts.get_by_email(engine, email)
    value = credits.balance(engine, user.id)
    if as_json:
        typer.echo(json.dumps({"email": email, "userId": user.id, "balance": value}))
    else:
        typer.echo(str(value))


@app.command()
def ledger(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The user's email.")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Newest rows.")] = 50,
) -> None:
    """A user's ledger, newest first."""
    engine = state(ctx).engine
    user = accounts.get_by_email(engine, email)
    for e in credits.ledger_page(engine, user.id, limit=limit):
        ref = f"generation {e.generation_id}" if e.generation_id is not None else ""
        if e.plan_id is not None:
            ref = f"plan {e.plan_id}"
        unit = f"poses on {e.quota_day}" if e.unit == "poses" else ""
        who = f"by user {e.actor_id}" if e.actor_id is not None else ""
        extra = "  ".join(x for x in (unit, ref, who, e.reason or "") if x)
        typer.echo(
            f"{e.id:>8}  {e.created_at:%Y-%m-%d %H:%M:%S}  {e.kind:<10} {e.amount:>+10d}  {extra}"
        )


@app.command()
def plan(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The user's email.")],
    quota: Annotated[
        int | None, typer.Option("--quota", min=1, help="Poses per day (a quota plan).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Last day of the quota plan (YYYY-MM-DD).")
    ] = None,
    payg: Annotated[bool, typer.Option("--payg", help="Back to pay as you go.")] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (kept with the plan change).")
    ] = None,
) -> None:
    """Put a user on a quota plan (--quota N --until DATE: N poses a day, no credits charged,
    through DATE in POSEGEN_QUOTA_TIMEZONE) or back on pay as you go (--payg)."""
    if payg == (quota is not None or until is not None):
        raise typer.BadParameter("give either --payg or both --quota and --until")
    if not payg and (quota is None or until is None):
        raise typer.BadParameter("a quota plan needs both --quota and --until")
    try:
        last = None if until is None else dt.date.fromisoformat(until)
    except ValueError as exc:
        raise typer.BadParameter(f"--until must be a date YYYY-MM-DD, got {until!r}") from exc
    engine = state(ctx).engine
    user = accounts.get_by_email(engine, email)
    set_to = credits.plans.set_plan(
        engine, user.id, daily_poses=quota, valid_until=last, reason=reason or "posegen CLI"
    )
    if set_to.daily_poses is None:
        typer.echo(f"{email}: pay as you go")
    else:
        typer.echo(f"{email}: quota of {set_to.daily_poses} poses a day through {last}")
