"""workers.liveness: which lock a worker holds for its life, for recovery in seconds

A nullable column on a small table: instant on PostgreSQL (no rewrite), a plain ALTER on SQLite.
Workers started before this revision have NULL and are recovered by their leases, as before.

Revision ID: h_recovery
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "h_recovery"
down_revision = "d_poseschema"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("workers", sa.Column("liveness", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("liveness")
