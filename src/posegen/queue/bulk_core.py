"""Batch statements written in portable SQLAlchemy Core: what SQLite runs (in-process, where a
statement costs no round trip). PostgreSQL runs array-based equivalents in ``dialect_pg``."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, or_, select, tuple_, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from posegen.db.models import GeneratedPose, GenerationEvent, GenerationStatus, PoseGeneration

G = PoseGeneration

#: The columns a lease holder's transaction reads about its generation.
LIVE_COLUMNS = (
    G.id,
    G.lease_token,
    G.user_id,
    G.status,
    G.cancel_requested,
    G.attempts,
    G.max_attempts,
    G.poses_completed,
    G.poses_failed,
    G.total_expected_poses,
    G.deadline_at,
    G.lease_expires_at,
    G.reserved_bytes,
    G.credit_charged,
)

#: (id, lease token, from status, to status, error kind, message for the owner, poses completed,
#: poses failed, raw error detail): the counts are the row's, read and updated under this
#: transaction's lock.
EndRow = tuple[int, int, str, str, str | None, str | None, int, int, str | None]


def fence(conn: Connection, ids: Sequence[int], lock: bool) -> list[Any]:
    stmt = (
        select(*LIVE_COLUMNS)
        .where(G.id.in_(sorted(set(ids))), G.status == GenerationStatus.PROCESSING)
        .order_by(G.id)
    )
    if lock:
        stmt = stmt.with_for_update()
    return list(conn.execute(stmt))


def insert_poses(
    conn: Connection, rows: Sequence[dict[str, Any]], now: dt.datetime
) -> set[tuple[int, str]]:
    stmt = (
        sqlite_insert(cast(Table, GeneratedPose.__table__))
        .on_conflict_do_nothing()
        .returning(GeneratedPose.generation_id, GeneratedPose.variation_key)
    )
    values = [{**r, "created_at": now} for r in rows]
    return {(int(g), str(k)) for g, k in conn.execute(stmt, values)}


def add_counts(conn: Connection, items: Sequence[tuple[int, int, int, int]]) -> None:
    # Jobs that gained the same numbers share one UPDATE (usually every job gained one pose).
    groups: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    for job_id, token, ok, bad in items:
        groups[(ok, bad)].append((job_id, token))
    for (ok, bad), pairs in groups.items():
        conn.execute(
            update(G)
            .where(tuple_(G.id, G.lease_token).in_(sorted(pairs)))
            .values(poses_completed=G.poses_completed + ok, poses_failed=G.poses_failed + bad)
        )


def end_rows(
    conn: Connection, items: Sequence[EndRow], now: dt.datetime, expired_before: dt.datetime
) -> None:
    groups: dict[
        tuple[str, str, str | None, str | None, int, int, str | None], list[tuple[int, int]]
    ]
    groups = defaultdict(list)
    for job_id, token, from_status, to_status, kind, message, ok, bad, detail in items:
        groups[(from_status, to_status, kind, message, ok, bad, detail)].append((job_id, token))
    for (from_status, to_status, kind, message, ok, bad, detail), pairs in groups.items():
        conn.execute(
            update(G)
            .where(
                tuple_(G.id, G.lease_token).in_(sorted(pairs)),
                G.status == from_status,
                or_(G.lease_expires_at.is_(None), G.lease_expires_at < expired_before),
            )
            .values(
                status=to_status,
                completed_at=now,
                lease_expires_at=None,
                error_kind=kind,
                error_message=message,
                error_detail=detail,
                poses_completed=ok,
                poses_failed=bad,
            )
        )


def insert_events(
    conn: Connection, items: Sequence[tuple[int, str, dict[str, Any]]], now: dt.datetime
) -> None:
    conn.execute(
        insert(GenerationEvent),
        [{"generation_id": g, "kind": k, "data": d, "created_at": now} for g, k, d in items],
    )


def flush(
    conn: Connection,
    increments: list[dict[str, int]],
    event_items: Sequence[tuple[int, str, dict[str, Any]]],
    now: dt.datetime,
) -> None:
    """Rollup increments and events (SQLite has no NOTIFY)."""
    from posegen.queue import rollup

    rollup.apply(conn, increments, now)
    if event_items:
        insert_events(conn, event_items, now)
