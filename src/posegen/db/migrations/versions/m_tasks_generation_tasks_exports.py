"""tasks: generation_tasks (follow-up work the queue leases), result_exports, export formats

``generation_tasks`` holds work on a generation after its poses (exports on demand; later,
background changes of one result), claimed and recovered by the same queue code as poses.
``result_exports`` names each exported file of a result. ``pose_generations.export_formats``
lists the formats the worker makes with each pose. New tables and a nullable column: no
rewrite of existing rows on either engine.

Revision ID: m_tasks
Revises: n_plans
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "m_tasks"
down_revision = "n_plans"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_STATUSES = ("pending", "processing", "completed", "failed")


def upgrade() -> None:
    op.add_column("pose_generations", sa.Column("export_formats", sa.JSON(), nullable=True))
    op.create_table(
        "generation_tasks",
        sa.Column("id", _BIGINT, nullable=False),
        sa.Column("generation_id", _BIGINT, nullable=False),
        sa.Column("result_id", _BIGINT, nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("task_key", sa.String(200), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                *_STATUSES, name="task_status", native_enum=False, create_constraint=True, length=16
            ),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("run_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_token", sa.BigInteger(), nullable=False),
        sa.Column("leased_by", sa.String(100), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_kind", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "attempts >= 0 AND max_attempts >= 1", name=op.f("ck_generation_tasks_attempts")
        ),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["pose_generations.id"],
            name="fk_generation_tasks_generation_id_pose_generations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["generated_poses.id"],
            name="fk_generation_tasks_result_id_generated_poses",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_generation_tasks"),
        sa.UniqueConstraint(
            "generation_id", "task_key", name="uq_generation_tasks_generation_id_task_key"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_generation_tasks_claim",
        "generation_tasks",
        ["run_after", "id"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_generation_tasks_recovery",
        "generation_tasks",
        ["lease_expires_at"],
        postgresql_where=sa.text("status = 'processing'"),
        sqlite_where=sa.text("status = 'processing'"),
    )
    op.create_table(
        "result_exports",
        sa.Column("id", _BIGINT, nullable=False),
        sa.Column("result_id", _BIGINT, nullable=False),
        sa.Column("generation_id", _BIGINT, nullable=False),
        sa.Column("format", sa.String(64), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["generated_poses.id"],
            name="fk_result_exports_result_id_generated_poses",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["pose_generations.id"],
            name="fk_result_exports_generation_id_pose_generations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_result_exports"),
        sa.UniqueConstraint("result_id", "format", name="uq_result_exports_result_id_format"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_result_exports_generation_id", "result_exports", ["generation_id"])


def downgrade() -> None:
    op.drop_index("ix_result_exports_generation_id", table_name="result_exports")
    op.drop_table("result_exports")
    op.drop_index("ix_generation_tasks_recovery", table_name="generation_tasks")
    op.drop_index("ix_generation_tasks_claim", table_name="generation_tasks")
    op.drop_table("generation_tasks")
    op.drop_column("pose_generations", "export_formats")
