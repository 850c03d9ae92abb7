"""The quota-ledger revision on a database that already holds credits and counted quota days
(both engines): existing rows stay credit rows, each counted day gets one use row so that
``credits check`` holds from the start, a plan row and a pose row can then be written, and
the downgrade removes exactly those, keeping ids retired."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text

from posegen import accounts, credits
from posegen.config import load_settings
from posegen.db import migrate
from posegen.db.engine import make_engine

REVISION = "q_credits"


def test_counted_days_are_ledgered_and_it_downgrades(empty_db_url: str) -> None:
    engine = make_engine(load_settings(database_url=empty_db_url))
    try:
        before = migrate.alembic_config()
        from alembic.script import ScriptDirectory

        previous = ScriptDirectory.from_config(before).get_revision(REVISION).down_revision
        assert isinstance(previous, str)
        migrate.upgrade(engine, previous)
        user = accounts.create_user(engine, "Q", "q@example.com").account.id
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO credit_ledger (user_id, amount, kind, idempotency_key, "
                    "created_at) VALUES (:u, 30, 'grant', 'grant:a', :t)"
                ),
                {"u": user, "t": dt.datetime(2026, 11, 28, tzinfo=dt.UTC)},
            )
            conn.execute(text("UPDATE users SET credit_balance = 30 WHERE id = :u"), {"u": user})
            conn.execute(
                text(
                    "INSERT INTO quota_usage (user_id, day, poses, updated_at) "
                    "VALUES (:u, :d, 4, :t)"
                ),
                {
                    "u": user,
                    "d": dt.date(2026, 11, 29),
                    "t": dt.datetime(2026, 11, 29, tzinfo=dt.UTC),
                },
            )
        migrate.upgrade(engine, REVISION)
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT kind, unit, amount, quota_day FROM credit_ledger ORDER BY id")
            ).all()
        assert [(k, u, a) for k, u, a, _ in rows] == [
            ("grant", "credits", 30),
            ("usage", "poses", -4),
        ]
        assert str(rows[1][3]).startswith("2026-11-29")
        assert credits.check(engine) == [] and credits.quota_ledger.check(engine) == []
        credits.plans.set_plan(engine, user, daily_poses=5, valid_until=dt.date(2099, 1, 1))

        migrate.downgrade(engine, previous)
        with engine.connect() as conn:
            left = conn.execute(text("SELECT kind, amount FROM credit_ledger ORDER BY id")).all()
        assert [tuple(r) for r in left] == [("grant", 30)]
        migrate.upgrade(engine, REVISION)
        credits.grant(engine, user, 2)
        with engine.connect() as conn:
            ids = conn.execute(text("SELECT id FROM credit_ledger ORDER BY id")).scalars().all()
        # Ids stay retired across both rebuilds (SQLite): the deleted use and plan rows' 2
        # and 3 (the largest) are not handed out again; the day is ledgered anew (4), then
        # the grant (5).
        assert ids == [1, 4, 5]
        assert credits.check(engine) == []
    finally:
        engine.dispose()
