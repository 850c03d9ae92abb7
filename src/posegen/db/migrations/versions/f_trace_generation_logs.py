"""trace context and log lines per generation: pose_generations.traceparent, generation_logs

``traceparent`` carries the submit's W3C trace context to the worker (nullable, no default: on
PostgreSQL adding it rewrites nothing). ``generation_logs`` holds the log lines the dashboard
shows beside a generation; its index serves "lines of generation G in order".

Revision ID: f_trace
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "f_trace"
down_revision = "h_recovery"
branch_labels = None
depends_on = None

# As in 0001: BIGINT ids on PostgreSQL, INTEGER on SQLite (its rowid alias).
_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("pose_generations") as batch:
        batch.add_column(sa.Column("traceparent", sa.String(64), nullable=True))
    op.create_table(
        "generation_logs",
        sa.Column("id", _BIGINT, nullable=False),
        sa.Column("generation_id", _BIGINT, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("logger", sa.String(100), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["pose_generations.id"],
            name="fk_generation_logs_generation_id_pose_generations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_generation_logs"),
    )
    op.create_index(
        "ix_generation_logs_generation_id_id", "generation_logs", ["generation_id", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_generation_logs_generation_id_id", table_name="generation_logs")
    op.drop_table("generation_logs")
    with op.batch_alter_table("pose_generations") as batch:
        batch.drop_column("traceparent")
