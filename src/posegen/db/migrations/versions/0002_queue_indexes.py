"""queue indexes: partial claim and recovery indexes, built without blocking writes

The seed added (status, startedAt) composite indexes with a plain CREATE INDEX, which takes a lock
that blocks every write to the table for the whole build, and indexes millions of finished rows
that no scan ever wants. Here, on PostgreSQL, each index is built with CREATE INDEX CONCURRENTLY
(outside a transaction, as PostgreSQL requires), IF NOT EXISTS so a retried deploy resumes, and
then the table is analysed. The indexes are partial on the live states, so they hold only the
rows the claim and the recovery scan look at. On SQLite, plain partial indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INDEXES = {
    # claim: pending rows in priority (high first), run_after, id order
    "ix_pose_generations_claim": (
        "pose_generations (priority DESC, run_after, id) WHERE status = 'pending'"
    ),
    # recovery: processing rows whose lease (capped by the hard deadline) has expired
    "ix_pose_generations_recovery": (
        "pose_generations (lease_expires_at) WHERE status = 'processing'"
    ),
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            for name, spec in INDEXES.items():
                _drop_if_invalid(name)
                op.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {spec}")
            op.execute("ANALYZE pose_generations")
    else:
        for name, spec in INDEXES.items():
            op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {spec}")
        op.execute("ANALYZE pose_generations")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            for name in INDEXES:
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    else:
        for name in INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")


def _drop_if_invalid(name: str) -> None:
    # A CONCURRENTLY build that was interrupted leaves an INVALID index behind; IF NOT EXISTS
    # would then keep the broken one forever. Drop it so the build starts over.
    invalid = (
        op.get_bind()
        .exec_driver_sql(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %(name)s AND NOT i.indisvalid",
            {"name": name},
        )
        .first()
    )
    if invalid:
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
