"""workers: paused_reason and paused_at, so operators see a worker whose backend is down

A worker whose circuit breaker is open claims nothing; these columns say why and since when
(NULL while it claims). Two nullable columns: no table rewrite on either engine.

Revision ID: g_breaker
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "g_breaker"
down_revision = "c_hardening"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("paused_reason", sa.String(length=500), nullable=True))
        batch.add_column(sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.drop_column("paused_at")
        batch.drop_column("paused_reason")
