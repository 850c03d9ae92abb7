"""vision: upload_detections, the person found once in a project's subject upload

One row per upload (its primary key is the upload's id, removed with it): the canonical pose,
the box and the mask PNG. A new table only: nothing existing is rewritten.

Revision ID: p_vision
Revises: j_credits
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "p_vision"
down_revision = "j_credits"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "upload_detections",
        sa.Column("upload_id", _BIGINT, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("pose", sa.JSON(), nullable=True),
        sa.Column("box", sa.JSON(), nullable=True),
        sa.Column("mask_png", sa.LargeBinary(), nullable=True),
        sa.Column("warnings", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["uploads.id"],
            name="fk_upload_detections_upload_id_uploads",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("upload_id", name="pk_upload_detections"),
    )


def downgrade() -> None:
    op.drop_table("upload_detections")
