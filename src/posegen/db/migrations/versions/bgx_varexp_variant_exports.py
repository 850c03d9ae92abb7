"""result_exports: exports of background variants beside the original's

A result's background variants are exported too (the same formats as the original), so an
export row now names what it was made from: ``variant_key`` (``''`` for the original result,
``bg-<digest>`` for a variant, the variant's own key) and ``variant_id`` (the
``result_variants`` row, NULL for the original; a plain id like ``result_variants.task_id``:
both rows go with their result). Unique on (result, variant key, format) instead of (result,
format): a retried write is still a no-op. Existing rows are the originals' (``''``). SQLite
copies the table (batch mode) to change the unique constraint, keeping AUTOINCREMENT.

Revision ID: bgx_varexp
Revises: sse_order
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "bgx_varexp"
down_revision = "sse_order"
branch_labels = None
depends_on = None

_KW = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with op.batch_alter_table("result_exports", table_kwargs=_KW) as batch:
        batch.add_column(
            sa.Column("variant_key", sa.String(200), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("variant_id", sa.BigInteger(), nullable=True))
        batch.drop_constraint("uq_result_exports_result_id_format", type_="unique")
        batch.create_unique_constraint(
            "uq_result_exports_result_id_variant_key_format",
            ["result_id", "variant_key", "format"],
        )


def downgrade() -> None:
    op.execute("DELETE FROM result_exports WHERE variant_key <> ''")
    with op.batch_alter_table("result_exports", table_kwargs=_KW) as batch:
        batch.drop_constraint("uq_result_exports_result_id_variant_key_format", type_="unique")
        batch.create_unique_constraint(
            "uq_result_exports_result_id_format", ["result_id", "format"]
        )
        batch.drop_column("variant_id")
        batch.drop_column("variant_key")
