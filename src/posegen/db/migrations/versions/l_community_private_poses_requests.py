"""community: private poses (pose_library.owner_user_id) and pose requests with votes and events

- ``pose_library.owner_user_id``: NULL for a library pose; a user's id for that user's private
  pose, which a CHECK keeps private (``owner_user_id IS NULL OR is_public = false``). Added with a
  plain ``ALTER TABLE ... ADD COLUMN`` on both engines, its foreign key and CHECK inline: no
  rebuild of ``pose_library`` on SQLite (a rebuild copies the table and, done carelessly, loses
  AUTOINCREMENT). Downgrade on SQLite rebuilds it the documented way, as ``c_hardening`` does.
- ``pose_requests`` (one active request per user and name: a partial unique index),
  ``pose_request_votes`` (one per user and request) and ``pose_request_events`` (the history the
  requester reads).

Revision ID: l_community
Revises: o_retention
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "l_community"
down_revision = "o_retention"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)
STATUSES = ("open", "in_progress", "approved", "rejected", "completed")
ACTIVE = "status IN ('open', 'approved', 'in_progress')"
#: The column's constraints, at the end of the table's SQL on SQLite (where ALTER TABLE cannot
#: add a table constraint, the table is rebuilt; the downgrade removes exactly this text).
FK_SQL = (
    "CONSTRAINT fk_pose_library_owner_user_id_users FOREIGN KEY(owner_user_id) "
    "REFERENCES users (id) ON DELETE CASCADE"
)
CK_SQL = (
    "CONSTRAINT ck_pose_library_owned_private CHECK (owner_user_id IS NULL OR is_public = false)"
)
SQLITE_CONSTRAINTS = f", \n\t{FK_SQL}, \n\t{CK_SQL}"


def _status(name: str) -> sa.Enum:
    return sa.Enum(*STATUSES, name=name, native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        op.execute("ALTER TABLE pose_library ADD COLUMN owner_user_id INTEGER")
        sql = _table_sql(conn)
        end = sql.rstrip().rfind(")")
        _rebuild_sqlite(conn, sql[:end].rstrip() + SQLITE_CONSTRAINTS + "\n)")
    else:
        op.add_column("pose_library", sa.Column("owner_user_id", ID, nullable=True))
        op.create_foreign_key(
            "fk_pose_library_owner_user_id_users",
            "pose_library",
            "users",
            ["owner_user_id"],
            ["id"],
            ondelete="CASCADE",
        )
        op.execute(f"ALTER TABLE pose_library ADD {CK_SQL}")
    op.create_index("ix_pose_library_owner_user_id", "pose_library", ["owner_user_id"])
    op.create_table(
        "pose_requests",
        sa.Column("id", ID, nullable=False),
        sa.Column("requester_id", ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("name_key", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("category_id", ID, nullable=True),
        sa.Column("use_case", sa.Text(), nullable=False),
        sa.Column("reference_upload_id", ID, nullable=True),
        sa.Column("status", _status("request_status"), nullable=False),
        sa.Column("admin_note", sa.Text(), nullable=True),
        sa.Column("fulfilled_pose_id", ID, nullable=True),
        sa.Column("vote_count", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.CheckConstraint("vote_count >= 0", name=op.f("ck_pose_requests_vote_count")),
        sa.ForeignKeyConstraint(
            ["requester_id"],
            ["users.id"],
            name=op.f("fk_pose_requests_requester_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["category_id"],
            ["pose_categories.id"],
            name=op.f("fk_pose_requests_category_id_pose_categories"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["reference_upload_id"],
            ["uploads.id"],
            name=op.f("fk_pose_requests_reference_upload_id_uploads"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["fulfilled_pose_id"],
            ["pose_library.id"],
            name=op.f("fk_pose_requests_fulfilled_pose_id_pose_library"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pose_requests")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_pose_requests_status_votes", "pose_requests", ["status", "vote_count", "id"]
    )
    op.create_index("ix_pose_requests_status_id", "pose_requests", ["status", "id"])
    op.create_index("ix_pose_requests_requester_id_id", "pose_requests", ["requester_id", "id"])
    op.create_index("ix_pose_requests_category_id", "pose_requests", ["category_id"])
    op.create_index(
        "ix_pose_requests_reference_upload_id", "pose_requests", ["reference_upload_id"]
    )
    op.create_index("ix_pose_requests_fulfilled_pose_id", "pose_requests", ["fulfilled_pose_id"])
    op.create_index(
        "uq_pose_requests_active_name",
        "pose_requests",
        ["requester_id", "name_key"],
        unique=True,
        postgresql_where=sa.text(ACTIVE),
        sqlite_where=sa.text(ACTIVE),
    )
    op.create_table(
        "pose_request_votes",
        sa.Column("request_id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["pose_requests.id"],
            name=op.f("fk_pose_request_votes_request_id_pose_requests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_pose_request_votes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("request_id", "user_id", name=op.f("pk_pose_request_votes")),
    )
    op.create_index("ix_pose_request_votes_user_id", "pose_request_votes", ["user_id"])
    op.create_table(
        "pose_request_events",
        sa.Column("id", ID, nullable=False),
        sa.Column("request_id", ID, nullable=False),
        sa.Column("status", _status("request_event_status"), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor_id", ID, nullable=True),
        sa.Column("pose_id", ID, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["pose_requests.id"],
            name=op.f("fk_pose_request_events_request_id_pose_requests"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["users.id"],
            name=op.f("fk_pose_request_events_actor_id_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["pose_id"],
            ["pose_library.id"],
            name=op.f("fk_pose_request_events_pose_id_pose_library"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pose_request_events")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_pose_request_events_request_id_id", "pose_request_events", ["request_id", "id"]
    )


def downgrade() -> None:
    op.drop_table("pose_request_events")
    op.drop_table("pose_request_votes")
    op.drop_table("pose_requests")
    op.drop_index("ix_pose_library_owner_user_id", table_name="pose_library")
    conn = op.get_bind()
    if conn.dialect.name == "sqlite":
        # SQLite cannot drop a column that a constraint names: rebuild without the constraints.
        sql = _table_sql(conn)
        if SQLITE_CONSTRAINTS not in sql:
            raise RuntimeError("pose_library's owner constraints are not as l_community added them")
        _rebuild_sqlite(conn, sql.replace(SQLITE_CONSTRAINTS, ""))
    op.drop_column("pose_library", "owner_user_id")  # on PostgreSQL its constraints go with it


def _table_sql(conn: sa.Connection) -> str:
    return str(
        conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'pose_library'"
        ).scalar_one()
    )


def _rebuild_sqlite(conn: sa.Connection, create_sql: str) -> None:
    """SQLite's documented rebuild: new table, copy, drop, rename, indexes, sequence. Foreign
    keys are off around every revision (``posegen.db.migrate``), so the DROP cascades nowhere."""
    new = create_sql.replace('CREATE TABLE "pose_library"', 'CREATE TABLE "_pl_new"', 1)
    if new == create_sql:
        raise RuntimeError("pose_library's SQL does not start as expected")
    indexes = [
        str(i)
        for i in conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master "
            "WHERE type = 'index' AND tbl_name = 'pose_library' AND sql IS NOT NULL"
        ).scalars()
    ]
    seq = conn.exec_driver_sql(
        "SELECT seq FROM sqlite_sequence WHERE name = 'pose_library'"
    ).scalar_one_or_none()
    conn.exec_driver_sql(new)
    conn.exec_driver_sql('INSERT INTO "_pl_new" SELECT * FROM pose_library')
    conn.exec_driver_sql("DROP TABLE pose_library")
    conn.exec_driver_sql('ALTER TABLE "_pl_new" RENAME TO pose_library')
    for statement in indexes:
        conn.exec_driver_sql(statement)
    if seq is not None:
        # Ids of deleted rows stay retired (the copy alone would restart after the largest id).
        conn.exec_driver_sql(
            "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'pose_library'", (seq,)
        )
