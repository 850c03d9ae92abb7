"""pose_generations.kept: the owner keeps a generation past the results retention

``posegen prune`` deletes finished generations older than ``POSEGEN_RETENTION_RESULTS_DAYS``
with their results unless ``kept``. A column with a constant default is a catalogue-only change
on PostgreSQL 11+ and a plain ALTER TABLE on SQLite (no table copy, so no cascade fires).

Revision ID: o_retention
Revises: p_vision
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "o_retention"
down_revision = "p_vision"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "pose_generations",
        sa.Column("kept", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    # Native DROP COLUMN (SQLite 3.35+): no table rebuild, the indexes stay.
    op.execute("ALTER TABLE pose_generations DROP COLUMN kept")
