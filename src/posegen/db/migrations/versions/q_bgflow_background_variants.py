"""backgrounds: pose_generations.background, result_variants, a task's own charge

``pose_generations.background`` is the background change asked for at submit (NULL: none).
``result_variants`` names each changed image of a result (a new image beside the original,
which is kept), written in the fenced completion of its ``background`` task.
``generation_tasks.credit_charged`` is what a task's failure pays back and ``charges`` counts
the times it was queued for money (the ledger keys' round). New table and nullable or
defaulted columns: no rewrite of existing rows on either engine.

Revision ID: q_bgflow
Revises: m_tasks
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "q_bgflow"
down_revision = "m_tasks"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("pose_generations", sa.Column("background", sa.JSON(), nullable=True))
    with op.batch_alter_table("generation_tasks") as batch:
        batch.add_column(
            sa.Column("credit_charged", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("charges", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "result_variants",
        sa.Column("id", _BIGINT, nullable=False),
        sa.Column("result_id", _BIGINT, nullable=False),
        sa.Column("generation_id", _BIGINT, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("variant_key", sa.String(200), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("image_path", sa.String(1024), nullable=False),
        sa.Column("thumbnail_path", sa.String(1024), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["result_id"],
            ["generated_poses.id"],
            name="fk_result_variants_result_id_generated_poses",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["pose_generations.id"],
            name="fk_result_variants_generation_id_pose_generations",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_result_variants"),
        sa.UniqueConstraint(
            "result_id", "variant_key", name="uq_result_variants_result_id_variant_key"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_result_variants_generation_id", "result_variants", ["generation_id"])


def downgrade() -> None:
    op.drop_index("ix_result_variants_generation_id", table_name="result_variants")
    op.drop_table("result_variants")
    with op.batch_alter_table("generation_tasks") as batch:
        batch.drop_column("charges")
        batch.drop_column("credit_charged")
    op.drop_column("pose_generations", "background")
