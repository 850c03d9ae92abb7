"""generation_events NOTIFY: every appended event wakes the API processes' event feeds

A statement-level AFTER INSERT trigger on PostgreSQL sends one ``pg_notify('posegen_events',
'<generation id>:<highest new event id>')`` per generation per statement. A trigger rather than
edits to each INSERT: events are appended by several statements (queue/events.py and the bulk
CTEs of dialect_pg*.py), and the trigger covers them all, and any added later, inside the very
statement (so the same transaction) that appends the rows. NOTIFY is delivered at commit, so a
listener never hears of a row it cannot read yet. SQLite has no NOTIFY (the feed polls): nothing
to do there.

Revision ID: i_progress
Revises: f_trace
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "i_progress"
down_revision = "e_backend"
branch_labels = None
depends_on = None

FUNCTION = """
CREATE OR REPLACE FUNCTION posegen_generation_events_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('posegen_events', generation_id::text || ':' || max(id)::text)
    FROM new_events GROUP BY generation_id;
    RETURN NULL;
END
$$
"""

TRIGGER = """
CREATE TRIGGER generation_events_notify AFTER INSERT ON generation_events
REFERENCING NEW TABLE AS new_events
FOR EACH STATEMENT EXECUTE FUNCTION posegen_generation_events_notify()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(FUNCTION)
    op.execute(TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS generation_events_notify ON generation_events")
    op.execute("DROP FUNCTION IF EXISTS posegen_generation_events_notify()")
