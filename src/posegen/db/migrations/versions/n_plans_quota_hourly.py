"""plans: credit_plans (append-only, a user's newest row is their plan), quota_usage (poses a
quota user took per local day), credit_hourly (credits charged and refunded per user and hour,
what the admin metrics sum)

New tables only: nothing existing is rewritten, on either engine.

Revision ID: n_plans
Revises: k_library
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "n_plans"
down_revision = "k_library"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "credit_plans",
        sa.Column("id", _BIGINT, nullable=False),
        sa.Column("user_id", _BIGINT, nullable=False),
        sa.Column(
            "plan",
            sa.Enum(
                "payg",
                "quota",
                name="plan_kind",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("daily_poses", sa.Integer(), nullable=True),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.Column("actor_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(plan = 'payg' AND daily_poses IS NULL AND valid_until IS NULL) OR "
            "(plan = 'quota' AND daily_poses >= 1 AND valid_until IS NOT NULL)",
            name=op.f("ck_credit_plans_plan_shape"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_credit_plans_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_credit_plans"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_credit_plans_user_id_id", "credit_plans", ["user_id", "id"])
    op.create_table(
        "quota_usage",
        sa.Column("user_id", _BIGINT, nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("poses", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_quota_usage_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "day", name="pk_quota_usage"),
    )
    op.create_table(
        "credit_hourly",
        sa.Column("user_id", _BIGINT, nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("charged", sa.BigInteger(), nullable=False),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_credit_hourly_user_id_users", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", "hour", name="pk_credit_hourly"),
    )
    op.create_index("ix_credit_hourly_hour", "credit_hourly", ["hour"])


def downgrade() -> None:
    op.drop_index("ix_credit_hourly_hour", table_name="credit_hourly")
    op.drop_table("credit_hourly")
    op.drop_table("quota_usage")
    op.drop_index("ix_credit_plans_user_id_id", table_name="credit_plans")
    op.drop_table("credit_plans")
