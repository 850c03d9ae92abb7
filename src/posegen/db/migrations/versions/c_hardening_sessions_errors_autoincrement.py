"""hardening: server-side dashboard sessions, error detail kept from users, ids never reused

- ``web_sessions``: one row per signed-in browser; the signed cookie names it by the hash of its
  nonce, and signing out deletes it, so a copied cookie stops working.
- ``error_detail`` on ``pose_generations`` and ``generated_poses``: the raw text of a failure
  (exception messages, addresses, SQL) for logs and admins; ``error_message`` becomes the
  sentence shown to the owner.
- SQLite: every table with an integer id is rebuilt with ``AUTOINCREMENT``. Without it SQLite
  hands out max(id) + 1, so deleting the newest row lets the next insert take its id again (a
  stale link, cookie or event id would then name someone else's row). PostgreSQL sequences never
  go back, so nothing changes there.

The SQLite rebuild follows SQLite's documented procedure for changes ALTER TABLE cannot make:
foreign keys off (which only takes effect outside a transaction), copy each table into a new one,
drop the old, rename, recreate its indexes, check the foreign keys, foreign keys on again.

Revision ID: c_hardening
Revises: f_trace
Create Date: 2026-11-30
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from alembic import op

revision = "c_hardening"
down_revision = "f_trace"
branch_labels = None
depends_on = None

#: Tables whose integer id SQLite must never hand out twice.
ID_TABLES = (
    "users",
    "api_keys",
    "pose_categories",
    "pose_library",
    "projects",
    "pose_generations",
    "generated_poses",
    "generation_events",
    "recovery_runs",
    # Added by revisions that came before this one in the chain.
    "uploads",
    "generation_logs",
)
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Error detail first: the SQLite rebuild copies each table's current definition.
    op.add_column("pose_generations", sa.Column("error_detail", sa.Text(), nullable=True))
    op.add_column("generated_poses", sa.Column("error_detail", sa.Text(), nullable=True))
    for table in ("pose_generations", "generated_poses"):
        _split_error_text(table)
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(autoincrement=True)
    op.create_table(
        "web_sessions",
        sa.Column("id", BIGINT_PK, nullable=False),
        sa.Column("user_id", BIGINT_PK, nullable=False),
        sa.Column("api_key_id", BIGINT_PK, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("expires_at", UTC, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_web_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_web_sessions_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_web_sessions_token_hash")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_web_sessions_user_id"), "web_sessions", ["user_id"])
    op.create_index(op.f("ix_web_sessions_api_key_id"), "web_sessions", ["api_key_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_web_sessions_api_key_id"), table_name="web_sessions")
    op.drop_index(op.f("ix_web_sessions_user_id"), table_name="web_sessions")
    op.drop_table("web_sessions")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(autoincrement=False)
    for table in ("pose_generations", "generated_poses"):
        op.execute(
            f"UPDATE {table} SET error_message = error_detail WHERE error_detail IS NOT NULL"
        )
    op.drop_column("generated_poses", "error_detail")
    op.drop_column("pose_generations", "error_detail")


def _split_error_text(table: str) -> None:
    """Existing failures: the raw text becomes the detail, the message the sentence for its kind.

    The sentences come from today's table (``posegen.failures``): they are what users of this
    version are meant to read, and one UPDATE with a CASE touches each failed row once.
    """
    from posegen import failures

    params: dict[str, str] = {"fallback": failures.FALLBACK}
    whens = []
    for i, (kind, sentence) in enumerate(failures.SENTENCES.items()):
        params[f"k{i}"], params[f"s{i}"] = kind, sentence
        whens.append(f"WHEN error_kind = :k{i} THEN :s{i}")
    for i, (prefix, sentence) in enumerate(failures.PREFIXES.items()):
        params[f"p{i}"], params[f"ps{i}"] = prefix + "%", sentence
        whens.append(f"WHEN error_kind LIKE :p{i} THEN :ps{i}")
    op.get_bind().execute(
        sa.text(
            f"UPDATE {table} SET error_detail = error_message, "
            f"error_message = CASE {' '.join(whens)} ELSE :fallback END "
            "WHERE error_kind IS NOT NULL"
        ),
        params,
    )


def _id_line(table: str, autoincrement: bool) -> str:
    if autoincrement:
        return "id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,"
    return f"id INTEGER NOT NULL CONSTRAINT pk_{table} PRIMARY KEY,"


def _new_sql(table: str, sql: str, autoincrement: bool) -> str | None:
    """``sql`` (a CREATE TABLE) with the id made AUTOINCREMENT or not; None if already so."""
    if ("AUTOINCREMENT" in sql) == autoincrement:
        return None
    sql = re.sub(rf",\s*CONSTRAINT pk_{table} PRIMARY KEY \(id\)", "", sql)
    id_line = _id_line(table, autoincrement)
    sql, count = re.subn(r"\bid INTEGER NOT NULL[^,]*,", id_line, sql, count=1)
    if count != 1:
        raise RuntimeError(f"unexpected definition of {table}.id: {sql[:200]}")
    return re.sub(rf"^CREATE TABLE \"?{table}\"?", f"CREATE TABLE {table}__new", sql, count=1)


def _rebuild_sqlite(*, autoincrement: bool) -> None:
    conn = op.get_bind()
    plans = []
    for table in ID_TABLES:
        sql = conn.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).scalar_one()
        new = _new_sql(table, sql, autoincrement)
        if new is not None:
            found = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master "
                "WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
                (table,),
            )
            plans.append((table, new, [str(index) for index in found.scalars()]))
    if not plans:
        return
    # PRAGMA foreign_keys is ignored inside a transaction, and with foreign keys on, dropping a
    # parent table would cascade-delete its children: end Alembic's transaction, rebuild in our
    # own, and open a new one for the rest of the revision (Alembic commits it).
    conn.exec_driver_sql("COMMIT")
    # Restored afterwards as the runner left it (posegen.db.migrate turns it off for the whole
    # run, so later revisions' table rebuilds must not find it switched back on).
    was_on = bool(conn.exec_driver_sql("PRAGMA foreign_keys").scalar())
    conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        for table, new, indexes in plans:
            conn.exec_driver_sql(new)
            conn.exec_driver_sql(f"INSERT INTO {table}__new SELECT * FROM {table}")
            conn.exec_driver_sql(f"DROP TABLE {table}")
            conn.exec_driver_sql(f"ALTER TABLE {table}__new RENAME TO {table}")
            for index in indexes:
                conn.exec_driver_sql(index)
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
        if broken is not None:
            raise RuntimeError(f"foreign key check failed after rebuild: {tuple(broken)}")
        conn.exec_driver_sql("COMMIT")
    except BaseException:
        conn.exec_driver_sql("ROLLBACK")
        raise
    finally:
        if was_on:
            conn.exec_driver_sql("PRAGMA foreign_keys = ON")
        conn.exec_driver_sql("BEGIN")
