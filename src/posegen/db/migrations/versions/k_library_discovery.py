"""library discovery: pose attributes, category tree, popularity, favourites, ratings, search

Columns are added with plain ``ALTER TABLE ... ADD COLUMN`` on both engines (constant defaults:
a catalogue-only change on PostgreSQL 11+; no table copy on SQLite, which keeps
``AUTOINCREMENT``). Each CHECK rides on the column it is added with. ``framing`` is filled from
the stored pose JSON, so the column and ``keypoints["framing"]`` agree from the start.

Text search is engine-specific and lives outside the models (``posegen.library.search``):
PostgreSQL gets a generated ``search_tsv`` column (name, tags, description, slug; weighted; the
tags also unstemmed, which the tag filter uses) and a GIN index on it; SQLite gets an FTS5 table
over the same
columns, kept by triggers (updates only of the searched columns, so popularity counts do not
touch it). The library table is small (hundreds to thousands of rows): its indexes are built
inside the migration's transaction rather than CONCURRENTLY.

Revision ID: k_library
Revises: l_community
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "k_library"
down_revision = "l_community"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: (column, SQL type and default, CHECK or None); in the order they are added (and dropped in
#: reverse: a CHECK naming other columns must go before them on SQLite).
COLUMNS = (
    (
        "difficulty",
        "VARCHAR(16) DEFAULT 'beginner' NOT NULL",
        "difficulty IN ('beginner', 'intermediate', 'advanced')",
    ),
    (
        "suitability",
        "VARCHAR(16) DEFAULT 'any' NOT NULL",
        "suitability IN ('any', 'female', 'male')",
    ),
    (
        "framing",
        "VARCHAR(16) DEFAULT 'full_body' NOT NULL",
        "framing IN ('full_body', 'half_body', 'portrait')",
    ),
    ("featured", "BOOLEAN DEFAULT false NOT NULL", None),
    ("premium", "BOOLEAN DEFAULT false NOT NULL", None),
    ("source", "VARCHAR(200)", None),
    ("licence", "VARCHAR(200)", None),
    ("author", "VARCHAR(200)", None),
    ("use_count", "BIGINT DEFAULT 0 NOT NULL", None),
    ("favorite_count", "BIGINT DEFAULT 0 NOT NULL", None),
    ("rating_count", "BIGINT DEFAULT 0 NOT NULL", None),
    (
        "rating_sum",
        "BIGINT DEFAULT 0 NOT NULL",
        "use_count >= 0 AND favorite_count >= 0 AND rating_count >= 0 AND rating_sum >= 0",
    ),
    ("popularity", "BIGINT DEFAULT 0 NOT NULL", "popularity = use_count + favorite_count"),
)
_CHECK_NAMES = {"rating_sum": "counts"}

INDEXES = {
    "ix_pose_library_popularity_id": "pose_library (popularity, id)",
    "ix_pose_library_created_at_id": "pose_library (created_at, id)",
    "ix_pose_library_name_id": "pose_library (name, id)",
    "ix_pose_library_category_id_popularity_id": "pose_library (category_id, popularity, id)",
}

PG_SEARCH = (
    "ALTER TABLE pose_library ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('english', coalesce(name, '')), 'A') || "
    "setweight(to_tsvector('english', coalesce(CAST(tags AS text), '')), 'B') || "
    "setweight(to_tsvector('english', coalesce(description, '')), 'C') || "
    "setweight(to_tsvector('english', replace(slug, '-', ' ')), 'D') || "
    # The tags once more without stemming or stop words: the tag filter's index condition (one
    # GIN index for both: every use counted at submit rewrites the row and its index entries).
    "setweight(to_tsvector('simple', coalesce(CAST(tags AS text), '')), 'B')) STORED",
    "CREATE INDEX ix_pose_library_search_tsv ON pose_library USING gin (search_tsv)",
)

_FTS_COLS = "name, description, tags, slug"
SQLITE_SEARCH = (
    f"CREATE VIRTUAL TABLE pose_library_fts USING fts5({_FTS_COLS}, content='pose_library', "
    "content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER pose_library_fts_ai AFTER INSERT ON pose_library BEGIN "
    f"INSERT INTO pose_library_fts (rowid, {_FTS_COLS}) "
    "VALUES (new.id, new.name, new.description, new.tags, new.slug); END",
    "CREATE TRIGGER pose_library_fts_ad AFTER DELETE ON pose_library BEGIN "
    f"INSERT INTO pose_library_fts (pose_library_fts, rowid, {_FTS_COLS}) "
    "VALUES ('delete', old.id, old.name, old.description, old.tags, old.slug); END",
    f"CREATE TRIGGER pose_library_fts_au AFTER UPDATE OF {_FTS_COLS} ON pose_library BEGIN "
    f"INSERT INTO pose_library_fts (pose_library_fts, rowid, {_FTS_COLS}) "
    "VALUES ('delete', old.id, old.name, old.description, old.tags, old.slug); "
    f"INSERT INTO pose_library_fts (rowid, {_FTS_COLS}) "
    "VALUES (new.id, new.name, new.description, new.tags, new.slug); END",
    "INSERT INTO pose_library_fts (pose_library_fts) VALUES ('rebuild')",
)


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    if pg:
        op.execute(
            "ALTER TABLE pose_categories ADD COLUMN parent_id BIGINT "
            "CONSTRAINT fk_pose_categories_parent_id_pose_categories "
            "REFERENCES pose_categories (id) ON DELETE SET NULL"
        )
    else:
        # A copy of the (small) table, so the foreign key is a named table constraint; it keeps
        # AUTOINCREMENT, and migrations run with foreign keys off, so nothing cascades.
        with op.batch_alter_table(
            "pose_categories", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            batch.add_column(sa.Column("parent_id", _BIGINT, nullable=True))
            batch.create_foreign_key(
                "fk_pose_categories_parent_id_pose_categories",
                "pose_categories",
                ["parent_id"],
                ["id"],
                ondelete="SET NULL",
            )
    op.create_index("ix_pose_categories_parent_id", "pose_categories", ["parent_id"])
    for column, spec, check in COLUMNS:
        sql = f"ALTER TABLE pose_library ADD COLUMN {column} {spec}"
        if check is not None:
            name = _CHECK_NAMES.get(column, column)
            sql += f" CONSTRAINT ck_pose_library_{name} CHECK ({check})"
        op.execute(sql)
    framing = "keypoints ->> 'framing'" if pg else "json_extract(keypoints, '$.framing')"
    op.execute(
        f"UPDATE pose_library SET framing = {framing} WHERE keypoints IS NOT NULL "
        f"AND {framing} IN ('full_body', 'half_body', 'portrait')"
    )
    for name, spec in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON {spec}")
    for table in ("pose_favorites", "pose_ratings"):
        extra: list[sa.schema.SchemaItem] = []
        if table == "pose_ratings":
            extra = [
                sa.Column("stars", sa.Integer(), nullable=False),
                sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
                sa.CheckConstraint("stars BETWEEN 1 AND 5", name=op.f("ck_pose_ratings_stars")),
            ]
        op.create_table(
            table,
            sa.Column("pose_id", _BIGINT, nullable=False),
            sa.Column("user_id", _BIGINT, nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            *extra,
            sa.ForeignKeyConstraint(
                ["pose_id"],
                ["pose_library.id"],
                name=f"fk_{table}_pose_id_pose_library",
                ondelete="CASCADE",
            ),
            sa.ForeignKeyConstraint(
                ["user_id"], ["users.id"], name=f"fk_{table}_user_id_users", ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint("pose_id", "user_id", name=f"pk_{table}"),
        )
        op.create_index(f"ix_{table}_user_id_pose_id", table, ["user_id", "pose_id"])
    for statement in PG_SEARCH if pg else SQLITE_SEARCH:
        op.execute(statement)
    op.execute("ANALYZE pose_library")


def downgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    if pg:
        op.execute("DROP INDEX IF EXISTS ix_pose_library_search_tsv")
        op.execute("ALTER TABLE pose_library DROP COLUMN IF EXISTS search_tsv")
    else:
        for trigger in ("pose_library_fts_au", "pose_library_fts_ad", "pose_library_fts_ai"):
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS pose_library_fts")
    for table in ("pose_ratings", "pose_favorites"):
        op.drop_index(f"ix_{table}_user_id_pose_id", table_name=table)
        op.drop_table(table)
    for name in INDEXES:
        op.execute(f"DROP INDEX {name}")
    for column, _spec, _check in reversed(COLUMNS):
        op.execute(f"ALTER TABLE pose_library DROP COLUMN {column}")
    op.drop_index("ix_pose_categories_parent_id", table_name="pose_categories")
    if pg:
        op.execute("ALTER TABLE pose_categories DROP COLUMN parent_id")
    else:
        # SQLite cannot drop a column a foreign key uses: copy the table without it.
        with op.batch_alter_table(
            "pose_categories", table_kwargs={"sqlite_autoincrement": True}
        ) as batch:
            batch.drop_constraint("fk_pose_categories_parent_id_pose_categories", "foreignkey")
            batch.drop_column("parent_id")
