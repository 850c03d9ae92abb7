"""credits: users.credit_balance (never negative), credit_ledger, what a generation was charged

The balance is a column kept in the same transaction as each append-only ledger row; the
CHECK makes an overdraft impossible whatever the code does. Adding columns with a constant
default is a catalogue-only change on PostgreSQL 11+ and a plain ALTER TABLE on SQLite; the
CHECK on users is added with a batch copy on SQLite (users is a small table).

Revision ID: j_credits
Revises: f_trace
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "j_credits"
down_revision = "i_progress"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_KINDS = ("grant", "purchase", "usage", "refund", "adjustment")


def upgrade() -> None:
    # A column CHECK in plain ALTER TABLE on both engines: a batch copy of users on SQLite
    # would drop the table, and with foreign keys on that deletes every row that refers to it.
    op.execute(
        "ALTER TABLE users ADD COLUMN credit_balance BIGINT DEFAULT 0 NOT NULL "
        "CONSTRAINT ck_users_credit_balance CHECK (credit_balance >= 0)"
    )
    for name in ("credit_charged", "credit_refunded"):
        op.add_column(
            "pose_generations",
            sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"),
        )
    op.create_table(
        "credit_ledger",
        sa.Column("id", _BIGINT, nullable=False),
        sa.Column("user_id", _BIGINT, nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                *_KINDS, name="credit_kind", native_enum=False, create_constraint=True, length=16
            ),
            nullable=False,
        ),
        sa.Column("generation_id", sa.BigInteger(), nullable=True),
        sa.Column("pose_id", sa.BigInteger(), nullable=True),
        sa.Column("payment_ref", sa.String(200), nullable=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_credit_ledger_amount_nonzero")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_credit_ledger_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_credit_ledger"),
        sa.UniqueConstraint("idempotency_key", name="uq_credit_ledger_idempotency_key"),
        sqlite_autoincrement=True,  # ids never reused (see c_hardening)
    )
    op.create_index("ix_credit_ledger_user_id_id", "credit_ledger", ["user_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_credit_ledger_user_id_id", table_name="credit_ledger")
    op.drop_table("credit_ledger")
    for name in ("credit_refunded", "credit_charged"):
        op.drop_column("pose_generations", name)
    op.drop_column("users", "credit_balance")
