"""``posegen metrics check [--fix]`` finds deliberately corrupted rollup rows and repairs them."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time

from metrics_seed import Seeded, add_generations, add_users, random_plan
from sqlalchemy import text

from posegen.db.engine import write_transaction
from posegen.metrics import rollup
from posegen.metrics.check import Counts, check, fetch_rollup


def seeded_db(engine, users=20, generations=300):
    seeded = Seeded()
    ids = add_users(engine, seeded, users)
    add_generations(engine, seeded, random_plan(ids, generations, random.Random(3)))
    check(engine, fix=True)
    assert check(engine).ok
    return seeded, ids


def truth(seeded: Seeded, user: int) -> Counts:
    s = seeded.by_status
    return Counts(
        seeded.generations[user],
        s[(user, "completed")],
        s[(user, "partial")],
        s[(user, "failed")],
        s[(user, "cancelled")],
        seeded.poses[user],
    )


def corrupt(engine, seeded, ids):
    """Four kinds of damage; returns the users touched."""
    busy = [u for u in ids if seeded.generations[u]]
    a, b, c = busy[:3]
    idle = add_users(engine, seeded, 1, start=500)[0]
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE user_generation_stats SET generations = generations + 3 WHERE user_id = :u"
            ),
            {"u": a},
        )
        conn.execute(text("DELETE FROM user_generation_stats WHERE user_id = :u"), {"u": b})
        conn.execute(
            text(
                "UPDATE user_generation_stats SET poses_completed = 0, failed = 99 "
                "WHERE user_id = :u"
            ),
            {"u": c},
        )
        conn.execute(
            text(
                "INSERT INTO user_generation_stats (user_id, generations, completed, "
                "partial, failed, cancelled, poses_completed, updated_at) "
                "VALUES (:u, 7, 7, 0, 0, 0, 7, CURRENT_TIMESTAMP)"
            ),
            {"u": idle},
        )
    return a, b, c, idle


def test_check_reports_each_corrupted_row_and_fix_repairs_it(engine):
    seeded, ids = seeded_db(engine)
    a, b, c, idle = corrupt(engine, seeded, ids)

    report = check(engine)
    assert not report.ok and not report.fixed
    drift = {d.user_id: d for d in report.drift}
    assert set(drift) == {a, b, c, idle}
    assert drift[a].actual.generations == drift[a].expected.generations + 3
    assert drift[b].actual is None and drift[b].expected == truth(seeded, b)
    assert drift[c].actual.failed == 99 and drift[c].expected == truth(seeded, c)
    assert drift[idle].expected == Counts() and drift[idle].actual.generations == 7
    assert check(engine).drift == report.drift  # reporting changed nothing

    fixed = check(engine, fix=True)
    assert fixed.fixed and {d.user_id for d in fixed.drift} == {a, b, c, idle}
    assert check(engine).ok
    for user in (a, b, c):
        assert fetch_rollup(engine, user) == truth(seeded, user)
    assert fetch_rollup(engine, idle) is None
    top = rollup.top_users(engine, 100)
    assert [(u.user_id, u.generation_count, u.total_poses) for u in top] == sorted(
        ((u, seeded.generations[u], seeded.poses[u]) for u in seeded.generations),
        key=lambda t: (-t[1], t[0]),
    )
    again = check(engine, fix=True)
    assert again.ok and not again.fixed


def _wait_for_lock_wait(engine, done: threading.Event) -> None:
    """Until the repair waits for the open writer (PostgreSQL), or briefly (SQLite)."""
    if engine.dialect.name != "postgresql":
        time.sleep(0.3)
        return
    deadline = time.monotonic() + 20
    with engine.connect() as conn:
        while time.monotonic() < deadline and not done.is_set():
            # any lock the repair waits for: the table lock, or a row lock were there none
            waiting = conn.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
            waiting = waiting.scalar_one()
            conn.rollback()
            if waiting:
                return
            time.sleep(0.02)
    raise AssertionError("the repair never waited for the open writer")


def test_fix_does_not_lose_a_write_that_is_in_flight(engine):
    """A queue-style transaction (base row + rollup +1) open while the repair runs is kept."""
    seeded, ids = seeded_db(engine)
    user = next(u for u in ids if seeded.generations[u])
    with engine.begin() as conn:  # damage the row the writer is about to touch
        conn.execute(
            text("UPDATE user_generation_stats SET generations = 1000 WHERE user_id = :u"),
            {"u": user},
        )
    done = threading.Event()
    result = {}

    with write_transaction(engine) as writer:
        writer.execute(
            text(
                "INSERT INTO pose_generations (user_id, project_id, type, selected_pose_ids, "
                "variations, total_expected_poses, width, height, status, priority, "
                "poses_completed, poses_failed, attempts, max_attempts, run_after, lease_token, "
                "cancel_requested, created_at) VALUES (:u, :p, 'text', '[]', 1, 1, 512, 512, "
                "'pending', 0, 0, 0, 0, 3, CURRENT_TIMESTAMP, 0, false, CURRENT_TIMESTAMP)"
            ),
            {"u": user, "p": seeded.projects[user]},
        )
        writer.execute(
            text(
                "UPDATE user_generation_stats SET generations = generations + 1 WHERE user_id = :u"
            ),
            {"u": user},
        )

        def repair():
            result["report"] = check(engine, fix=True)
            done.set()

        thread = threading.Thread(target=repair)
        thread.start()
        _wait_for_lock_wait(engine, done)
    thread.join(30)
    assert done.is_set()
    assert result["report"].fixed
    assert check(engine).ok
    assert fetch_rollup(engine, user).generations == seeded.generations[user] + 1


def run(env, *args):
    return subprocess.run(
        [sys.executable, "-m", "posegen", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_check_fix_and_top_users(engine, cli_env):
    seeded, ids = seeded_db(engine, users=8, generations=60)
    a, b, c, idle = corrupt(engine, seeded, ids)

    bad = run(cli_env, "metrics", "check")
    assert bad.returncode == 1, bad.stderr
    assert f"drift  user {b}: rollup no row;" in bad.stdout
    assert "DRIFT:" in bad.stdout and "4 drifted" in bad.stdout

    fix = run(cli_env, "metrics", "check", "--fix", "--json")
    assert fix.returncode == 0, fix.stderr
    body = json.loads(fix.stdout)
    assert body["fixed"] is True and body["drifted"] == 4
    assert {d["userId"] for d in body["drift"]} == {a, b, c, idle}

    ok = run(cli_env, "metrics", "check")
    assert ok.returncode == 0 and ok.stdout.startswith("ok:"), ok.stdout

    top = run(cli_env, "metrics", "top-users", "--limit", "3", "--json")
    assert top.returncode == 0, top.stderr
    assert json.loads(top.stdout) == {"users": [u.as_json() for u in rollup.top_users(engine, 3)]}

    bad_limit = run(cli_env, "metrics", "top-users", "--limit", "0")
    assert bad_limit.returncode == 2
    assert "Traceback" not in bad_limit.stderr
    assert bad_limit.stderr.strip() == "error: limit must be between 1 and 100, got 0"
