"""generation_events: one generation's event ids commit in id order (PostgreSQL)

Readers keep "the highest event id handed out" per generation (``Last-Event-ID``, the API's
event feed) and read only rows above it. An id is drawn when its row is inserted but becomes
visible when its transaction commits, so two transactions appending to one generation at once
could commit out of id order: a reader that saw the later id first would skip the earlier one
for good (``tests/queue/test_event_commit_order.py`` shows it). A BEFORE INSERT row trigger now
takes a transaction-scoped advisory lock on the row's generation and only then draws the id: a
second transaction appending to that generation waits until the first commits (or rolls back),
so its ids are both drawn and committed after the first's. Other generations are not held up.
(The column default draws an id before any trigger runs; that one is left unused, a gap.)
Inserts that append to several generations list them in id order (``dialect_pg_bulk``), so two
of them take the locks in the same order. SQLite has one writer at a time: nothing to do there.

Revision ID: sse_order
Revises: q_credits
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "sse_order"
down_revision = "q_credits"
branch_labels = None
depends_on = None

#: The advisory lock's class (first key of the two-key form; the one-key locks used elsewhere
#: live in a separate key space): "pgev".
LOCK_CLASS = 0x70676576

FUNCTION = f"""
CREATE OR REPLACE FUNCTION posegen_generation_events_order() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK_CLASS}, (NEW.generation_id & 2147483647)::int);
    NEW.id := nextval('generation_events_id_seq');
    RETURN NEW;
END
$$
"""

TRIGGER = """
CREATE TRIGGER generation_events_order BEFORE INSERT ON generation_events
FOR EACH ROW EXECUTE FUNCTION posegen_generation_events_order()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(FUNCTION)
    op.execute(TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS generation_events_order ON generation_events")
    op.execute("DROP FUNCTION IF EXISTS posegen_generation_events_order()")
