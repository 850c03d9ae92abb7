"""credits: the ledger also records a quota plan's poses and plan changes

credit_ledger gains ``unit`` ('credits', the default: every existing row; or 'poses': a quota
day's use and give-back, with ``quota_day``), ``plan_id`` (a ``plan`` row, amount 0, names the
``credit_plans`` row it records) and an index on ``generation_id`` (what refunds read). The
kind CHECK gains 'plan' and the amount CHECK lets only a plan row be 0.

PostgreSQL: columns with a constant default (catalogue-only) and the CHECKs swapped. SQLite
cannot change a CHECK: the table is rebuilt (new table, copy, drop, rename, indexes, sequence);
nothing refers to credit_ledger, so the DROP cascades nowhere.

Days already counted in ``quota_usage`` get one use row each (``quota:before:<user>:<day>``),
so every day's count equals its pose rows from the start. Downgrade deletes the rows the old
schema cannot hold (pose rows and plan rows: neither moved a
balance, so every balance still equals its ledger's sum).

Revision ID: q_credits
Revises: q_bgflow
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "q_credits"
down_revision = "q_bgflow"
branch_labels = None
depends_on = None

_OLD_KINDS = ("grant", "purchase", "usage", "refund", "adjustment")
_NEW_KINDS = (*_OLD_KINDS, "plan")
_COLUMNS = (
    "id, user_id, amount, kind, generation_id, pose_id, payment_ref, idempotency_key, "
    "actor_id, reason, created_at"
)


def _kinds(kinds: tuple[str, ...]) -> str:
    return "kind IN (" + ", ".join(f"'{k}'" for k in kinds) + ")"


def _sqlite_table(name: str, new: bool) -> str:
    extra = (
        "\tunit VARCHAR(16) DEFAULT 'credits' NOT NULL, \n\tquota_day DATE, \n\tplan_id BIGINT, \n"
        if new
        else ""
    )
    checks = (
        "\tCONSTRAINT ck_credit_ledger_amount_nonzero CHECK (amount <> 0 OR kind = 'plan'), \n"
        "\tCONSTRAINT ck_credit_ledger_quota_day "
        "CHECK ((unit = 'poses') = (quota_day IS NOT NULL)), \n"
        "\tCONSTRAINT ck_credit_ledger_ledger_unit CHECK (unit IN ('credits', 'poses')), \n"
        if new
        else "\tCONSTRAINT ck_credit_ledger_amount_nonzero CHECK (amount <> 0), \n"
    )
    return (
        f'CREATE TABLE "{name}" (\n'
        "\tid INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, \n"
        "\tuser_id INTEGER NOT NULL, \n"
        "\tamount BIGINT NOT NULL, \n"
        "\tkind VARCHAR(16) NOT NULL, \n"
        "\tgeneration_id BIGINT, \n"
        "\tpose_id BIGINT, \n"
        "\tpayment_ref VARCHAR(200), \n"
        "\tidempotency_key VARCHAR(200) NOT NULL, \n"
        "\tactor_id BIGINT, \n"
        "\treason TEXT, \n"
        "\tcreated_at DATETIME NOT NULL, \n" + extra + checks + "\tCONSTRAINT "
        "fk_credit_ledger_user_id_users FOREIGN KEY(user_id) REFERENCES users (id) "
        "ON DELETE CASCADE, \n"
        "\tCONSTRAINT uq_credit_ledger_idempotency_key UNIQUE (idempotency_key), \n"
        "\tCONSTRAINT ck_credit_ledger_credit_kind CHECK ("
        + _kinds(_NEW_KINDS if new else _OLD_KINDS)
        + ")\n)"
    )


def _rebuild_sqlite(conn: sa.Connection, new: bool) -> None:
    """SQLite's documented rebuild; foreign keys are off around every revision."""
    seq = conn.exec_driver_sql(
        "SELECT seq FROM sqlite_sequence WHERE name = 'credit_ledger'"
    ).scalar_one_or_none()
    conn.exec_driver_sql(_sqlite_table("_cl_new", new))
    conn.exec_driver_sql(f'INSERT INTO "_cl_new" ({_COLUMNS}) SELECT {_COLUMNS} FROM credit_ledger')
    conn.exec_driver_sql("DROP TABLE credit_ledger")
    conn.exec_driver_sql('ALTER TABLE "_cl_new" RENAME TO credit_ledger')
    op.create_index("ix_credit_ledger_user_id_id", "credit_ledger", ["user_id", "id"])
    if seq is not None:
        # Ids of deleted rows stay retired (the copy alone would restart after the largest id).
        conn.exec_driver_sql(
            "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'credit_ledger'", (seq,)
        )


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        _rebuild_sqlite(conn, new=True)
    else:
        op.add_column(
            "credit_ledger",
            sa.Column("unit", sa.String(16), nullable=False, server_default="credits"),
        )
        op.add_column("credit_ledger", sa.Column("quota_day", sa.Date(), nullable=True))
        op.add_column("credit_ledger", sa.Column("plan_id", sa.BigInteger(), nullable=True))
        op.create_check_constraint(
            op.f("ck_credit_ledger_ledger_unit"), "credit_ledger", "unit IN ('credits', 'poses')"
        )
        op.create_check_constraint(
            op.f("ck_credit_ledger_quota_day"),
            "credit_ledger",
            "(unit = 'poses') = (quota_day IS NOT NULL)",
        )
        op.drop_constraint(op.f("ck_credit_ledger_amount_nonzero"), "credit_ledger", type_="check")
        op.create_check_constraint(
            op.f("ck_credit_ledger_amount_nonzero"), "credit_ledger", "amount <> 0 OR kind = 'plan'"
        )
        op.drop_constraint(op.f("ck_credit_ledger_credit_kind"), "credit_ledger", type_="check")
        op.create_check_constraint(
            op.f("ck_credit_ledger_credit_kind"), "credit_ledger", _kinds(_NEW_KINDS)
        )
    op.create_index("ix_credit_ledger_generation_id", "credit_ledger", ["generation_id"])
    # Days counted before this revision get one use row each, so that every day's count
    # equals its pose rows from the start (``posegen credits check``).
    op.execute(
        "INSERT INTO credit_ledger (user_id, amount, kind, unit, quota_day, idempotency_key, "
        "created_at) SELECT user_id, -poses, 'usage', 'poses', day, 'quota:before:' || "
        "CAST(user_id AS VARCHAR(20)) || ':' || CAST(day AS VARCHAR(10)), updated_at "
        "FROM quota_usage WHERE poses <> 0 ORDER BY user_id, day"
    )


def downgrade() -> None:
    op.execute("DELETE FROM credit_ledger WHERE unit <> 'credits' OR kind = 'plan'")
    op.drop_index("ix_credit_ledger_generation_id", table_name="credit_ledger")
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        _rebuild_sqlite(conn, new=False)
        return
    op.drop_constraint(op.f("ck_credit_ledger_credit_kind"), "credit_ledger", type_="check")
    op.create_check_constraint(
        op.f("ck_credit_ledger_credit_kind"), "credit_ledger", _kinds(_OLD_KINDS)
    )
    op.drop_constraint(op.f("ck_credit_ledger_amount_nonzero"), "credit_ledger", type_="check")
    op.create_check_constraint(
        op.f("ck_credit_ledger_amount_nonzero"), "credit_ledger", "amount <> 0"
    )
    op.drop_constraint(op.f("ck_credit_ledger_quota_day"), "credit_ledger", type_="check")
    op.drop_constraint(op.f("ck_credit_ledger_ledger_unit"), "credit_ledger", type_="check")
    for name in ("plan_id", "quota_day", "unit"):
        op.drop_column("credit_ledger", name)
