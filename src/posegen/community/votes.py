"""Votes: one per user and request, never on one's own, only while the request is active.

The vote row and ``vote_count`` change in one transaction: the insert (or delete) decides
whether the count moves, and the count's UPDATE takes the request's row lock, so concurrent
votes of different users serialise on it and a user's second vote finds the first (the primary
key) and moves nothing.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from posegen.db.engine import write_transaction
from posegen.db.models import (
    ACTIVE_REQUEST_STATUSES,
    PoseRequest,
    PoseRequestVote,
    RequestStatus,
)
from posegen.db.types import utcnow
from posegen.exceptions import Conflict, NotFound

R = PoseRequest
V = PoseRequestVote


def _insert_vote(conn: Connection, request_id: int, user_id: int) -> bool:
    """Insert the vote unless it exists; True if this call inserted it."""
    # Both dialects spell "insert unless the key exists" the same way; a concurrent twin waits
    # for the first insert's transaction and then inserts nothing.
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (
        dialect.insert(V)
        .values(request_id=request_id, user_id=user_id, created_at=utcnow())
        .on_conflict_do_nothing()
        .returning(V.user_id)
    )
    return conn.execute(stmt).first() is not None


def _check(conn: Connection, request_id: int, user_id: int) -> None:
    row = conn.execute(select(R.requester_id, R.status).where(R.id == request_id)).first()
    if row is None:
        raise NotFound(f"request {request_id} not found", kind="request-not-found")
    if row.requester_id == user_id:
        raise Conflict("you cannot vote for your own request", kind="own-request")
    if RequestStatus(row.status) not in ACTIVE_REQUEST_STATUSES:
        raise _closed(request_id, row.status)


def _closed(request_id: int, status: str) -> Conflict:
    return Conflict(f"request {request_id} is {status}: voting has closed", kind="request-closed")


def vote(engine: Engine, request_id: int, user_id: int) -> int:
    """Vote for the request (again: nothing changes); returns its vote count."""
    with write_transaction(engine) as conn:
        _check(conn, request_id, user_id)
        if _insert_vote(conn, request_id, user_id):
            count = conn.execute(
                update(R)
                .where(R.id == request_id, R.status.in_(ACTIVE_REQUEST_STATUSES))
                .values(vote_count=R.vote_count + 1)
                .returning(R.vote_count)
            ).scalar_one_or_none()
            if count is None:  # closed between the check and now: the vote goes with the rollback
                raise _closed(request_id, "closed")
            return int(count)
        return int(conn.execute(select(R.vote_count).where(R.id == request_id)).scalar_one())


def unvote(engine: Engine, request_id: int, user_id: int) -> int:
    """Take the user's vote back (none: nothing changes); returns the request's vote count."""
    with write_transaction(engine) as conn:
        if conn.execute(select(R.id).where(R.id == request_id)).first() is None:
            raise NotFound(f"request {request_id} not found", kind="request-not-found")
        gone = conn.execute(
            delete(V).where(V.request_id == request_id, V.user_id == user_id).returning(V.user_id)
        ).first()
        if gone is not None:
            count = conn.execute(
                update(R)
                .where(R.id == request_id)
                .values(vote_count=R.vote_count - 1)
                .returning(R.vote_count)
            ).scalar_one()
            return int(count)
        return int(conn.execute(select(R.vote_count).where(R.id == request_id)).scalar_one())
