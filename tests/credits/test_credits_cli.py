"""``posegen credits`` against a real database (both engines): grant, balance, ledger, and a
check that finds a drifted balance (or a drifted quota day), exits 1, and repairs it with
--fix."""

from __future__ import annotations

import json
import subprocess
import sys

from sqlalchemy import Engine, insert, update

from posegen import accounts
from posegen.db.models import User


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "posegen", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_grant_balance_ledger_check_and_fix(engine: Engine, cli_env: dict[str, str]) -> None:
    user = accounts.create_user(engine, "Cli", "cli@example.com").account
    assert (
        run(cli_env, "credits", "grant", "cli@example.com", "40", "--reason", "hi").returncode == 0
    )
    took = run(
        cli_env, "credits", "grant", "--adjust", "--reason", "x", "cli@example.com", "--", "-15"
    )
    assert took.returncode == 0, took.stderr
    assert took.stdout.strip().endswith("balance 25")

    bal = run(cli_env, "credits", "balance", "cli@example.com", "--json")
    assert json.loads(bal.stdout) == {"email": "cli@example.com", "userId": user.id, "balance": 25}
    lines = run(cli_env, "credits", "ledger", "cli@example.com").stdout.splitlines()
    assert len(lines) == 2 and "adjustment" in lines[0] and "-15" in lines[0] and "hi" in lines[1]

    assert run(cli_env, "credits", "check").stdout.startswith("ok:")
    with engine.begin() as conn:
        conn.execute(update(User).where(User.id == user.id).values(credit_balance=7))
    bad = run(cli_env, "credits", "check")
    assert bad.returncode == 1
    assert f"drift  user {user.id} cli@example.com: balance 7, ledger 25" in bad.stdout
    fixed = run(cli_env, "credits", "check", "--fix", "--json")
    assert fixed.returncode == 0
    assert json.loads(fixed.stdout)["drift"] == [{"userId": user.id, "balance": 7, "ledgerSum": 25}]
    assert run(cli_env, "credits", "check").returncode == 0

    # Mistakes a person can make: one line, no traceback.
    for args, code in (
        (("grant", "nobody@example.com", "5"), 1),
        (("grant", "cli@example.com", "--", "-5"), 2),
        (("grant", "--adjust", "cli@example.com", "--", "-500"), 1),
        (("grant", "cli@example.com", "0"), 2),
    ):
        r = run(cli_env, "credits", *args)
        assert r.returncode == code, (args, r.stderr)
        assert "Traceback" not in r.stderr and r.stderr.startswith("error: ")
    assert run(cli_env, "credits", "balance", "cli@example.com").stdout.strip() == "25"


def test_plan_quota_then_payg(engine: Engine, cli_env: dict[str, str]) -> None:
    from posegen import credits
    from posegen.config import Settings

    user = accounts.create_user(engine, "Plan", "plan@example.com").account
    put = run(
        cli_env, "credits", "plan", "plan@example.com", "--quota", "5", "--until", "2099-12-31"
    )
    assert put.returncode == 0, put.stderr
    assert "quota of 5 poses a day through 2099-12-31" in put.stdout
    standing = credits.plans.standing(engine, Settings(), user.id)
    assert standing.plan.is_quota and standing.left_today == 5
    for args in (("--quota", "5"), ("--payg", "--quota", "5"), ("--quota", "5", "--until", "x")):
        bad = run(cli_env, "credits", "plan", "plan@example.com", *args)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
    back = run(cli_env, "credits", "plan", "plan@example.com", "--payg")
    assert back.returncode == 0 and "pay as you go" in back.stdout
    assert credits.plans.standing(engine, Settings(), user.id).left_today is None


def test_check_proves_a_quota_day_against_its_ledger_rows(
    engine: Engine, cli_env: dict[str, str]
) -> None:
    from posegen import credits, queue
    from posegen.config import Settings
    from posegen.db.models import GenerationType, Project, QuotaUsage
    from posegen.queue import GenerationRequest

    user = accounts.create_user(engine, "Quota", "quota@example.com").account
    assert (
        run(
            cli_env, "credits", "plan", "quota@example.com", "--quota", "9", "--until", "2099-12-31"
        ).returncode
        == 0
    )
    with engine.begin() as conn:
        project = conn.execute(
            insert(Project).values(user_id=user.id, name="q").returning(Project.id)
        ).scalar_one()
    settings = Settings()
    req = GenerationRequest(user.id, project, GenerationType.TEXT, [], 3, prompt="x")
    queue.submit(engine, settings, req)
    day = credits.plans.local_day(settings)
    lines = run(cli_env, "credits", "ledger", "quota@example.com").stdout.splitlines()
    assert "usage" in lines[0] and "-3" in lines[0] and f"poses on {day}" in lines[0]
    assert "plan" in lines[1] and "plan " in lines[1]
    assert run(cli_env, "credits", "check").returncode == 0

    with engine.begin() as conn:
        conn.execute(update(QuotaUsage).values(poses=1))
    bad = run(cli_env, "credits", "check")
    assert bad.returncode == 1
    assert f"quota drift  user {user.id} on {day}: counted 1 poses, ledger 3" in bad.stdout
    fixed = run(cli_env, "credits", "check", "--fix", "--json")
    assert fixed.returncode == 0
    assert json.loads(fixed.stdout)["quotaDrift"] == [
        {"userId": user.id, "day": day.isoformat(), "counted": 1, "ledgered": 3}
    ]
    assert run(cli_env, "credits", "check").returncode == 0
    assert credits.plans.standing(engine, settings, user.id).left_today == 6
