"""per-user quotas: submission window and result bytes on the rollup row, sizes of results

``user_generation_stats`` gains the per-minute submission window and the user's stored and
reserved result bytes: the submit statement already upserts that row, so its row lock is what
serialises one user's submits. ``pose_generations.reserved_bytes`` is the estimate a generation
holds until it ends; ``generated_poses.bytes`` is the stored size of each result. Results
stored before this revision have no recorded size and count as 0 bytes. Adding columns with a
constant default is a catalogue-only change on PostgreSQL 11+, and ALTER TABLE on SQLite.

Revision ID: b_limits
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b_limits"
down_revision = "a_uploads"
branch_labels = None
depends_on = None


def _stats_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_submissions", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("result_bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("reserved_bytes", sa.BigInteger(), nullable=False, server_default="0"),
    ]


def upgrade() -> None:
    # Plain ALTER TABLE on both engines (SQLite >= 3.35 drops columns too): a batch copy
    # would rebuild the job table.
    for column in _stats_columns():
        op.add_column("user_generation_stats", column)
    op.add_column(
        "pose_generations",
        sa.Column("reserved_bytes", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.add_column("generated_poses", sa.Column("bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("generated_poses", "bytes")
    op.drop_column("pose_generations", "reserved_bytes")
    for column in reversed(_stats_columns()):
        op.drop_column("user_generation_stats", column.name)
