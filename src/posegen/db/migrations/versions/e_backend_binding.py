"""backend binding: generations, results and workers record the backend (and model)

A generation records the backend it was accepted for (and the model, when one is named or its
first claim pins one); a worker claims only generations bound to what it serves, so a ComfyUI job
can never be finished by a preview worker. The claim index leads with the backend, so a worker's
claim stays one index range scan. Results and workers record backend and model too.

Adding a NOT NULL column with a constant default is a metadata-only change on PostgreSQL 11+ (no
table rewrite). Live rows (pending, processing) are bound to the deployment's backend as the
environment names it when the migration runs; finished rows keep the default, which only labels
history. On PostgreSQL the new claim index is built CONCURRENTLY under a temporary name, then
swapped for the old one, so claims are never left without an index and writes never block.

Revision ID: e_backend
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e_backend"
down_revision = "g_breaker"
branch_labels = None
depends_on = None

CLAIM = "ix_pose_generations_claim"
NEW_CLAIM = "pose_generations (backend, priority DESC, run_after, id) WHERE status = 'pending'"
OLD_CLAIM = "pose_generations (priority DESC, run_after, id) WHERE status = 'pending'"
COLUMNS = {
    "generated_poses": ("backend", "model"),
    "workers": ("backend", "model"),
    "pose_generations": ("backend", "model"),
}


def _deployment_backend() -> str:
    from posegen.config import load_settings
    from posegen.exceptions import ConfigError

    try:
        return load_settings().serving_backend
    except ConfigError:
        return "posemap"


def upgrade() -> None:
    op.add_column(
        "pose_generations",
        sa.Column("backend", sa.String(16), nullable=False, server_default=sa.text("'posemap'")),
    )
    op.add_column("pose_generations", sa.Column("model", sa.String(200), nullable=True))
    for table in ("generated_poses", "workers"):
        op.add_column(table, sa.Column("backend", sa.String(16), nullable=True))
        op.add_column(table, sa.Column("model", sa.String(200), nullable=True))
    backend = _deployment_backend()
    if backend != "posemap":
        # Only live rows: the partial indexes find them, and a full-table rewrite is avoided.
        op.execute(
            sa.text(
                "UPDATE pose_generations SET backend = :b WHERE status IN ('pending', 'processing')"
            ).bindparams(b=backend)
        )
    _swap_claim_index(NEW_CLAIM)


def downgrade() -> None:
    _swap_claim_index(OLD_CLAIM)
    for table, columns in COLUMNS.items():
        for column in columns:
            # Native DROP COLUMN (SQLite 3.35+): no table rebuild, the other indexes stay.
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")


def _swap_claim_index(spec: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        tmp = CLAIM + "_next"
        with op.get_context().autocommit_block():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {tmp}")
            op.execute(f"CREATE INDEX CONCURRENTLY {tmp} ON {spec}")
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {CLAIM}")
            op.execute(f"ALTER INDEX {tmp} RENAME TO {CLAIM}")
            op.execute("ANALYZE pose_generations")
    else:
        op.execute(f"DROP INDEX IF EXISTS {CLAIM}")
        op.execute(f"CREATE INDEX {CLAIM} ON {spec}")
