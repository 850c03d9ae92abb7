"""Retention of rows: events of old generations, old generations with their results, uploads
nobody refers to. Each walks its table in keyset batches by id (never an OFFSET, never one big
DELETE), each batch its own short transaction, so a prune never holds a lock for long on
PostgreSQL and never keeps SQLite's write lock from the queue for more than one batch.

Ids grow with time, so a walk stops at the first row created after the cutoff: a prune reads
the rows it deletes plus the few old ones it keeps (kept, still active), not the whole table.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, delete, false, func, select

from posegen import uploads
from posegen.config import Settings
from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import (
    TERMINAL_STATUSES,
    GeneratedPose,
    GenerationEvent,
    GenerationLog,
    PoseGeneration,
    Upload,
)
from posegen.exceptions import StorageUnavailable
from posegen.queue import quota
from posegen.retention.report import PruneReport, Tally
from posegen.storage import make_storage

log = logging.getLogger(__name__)
G = PoseGeneration
_TERMINAL = tuple(s.value for s in TERMINAL_STATUSES)

#: Removers of the bytes of generations whose rows are gone: ``(settings, ids) -> files
#: removed``. Results are here; a new table that owns bytes per generation (exports) appends
#: its remover, and ``orphans.NAMESPACES`` its sweep, and the prune covers it.
GenerationBytes = Callable[[Settings, list[int]], int]


def _result_bytes(settings: Settings, generation_ids: list[int]) -> int:
    store = make_storage(settings)
    return sum(store.delete_generation(gid) for gid in generation_ids)


GENERATION_BYTES: list[GenerationBytes] = [_result_bytes]


def _ended_before(row: Any, cutoff: dt.datetime) -> bool:
    status = getattr(row.status, "value", row.status)
    return status in _TERMINAL and row.completed_at is not None and row.completed_at < cutoff


def prune_events(engine: Engine, cutoff: dt.datetime, batch: int, report: PruneReport) -> None:
    """Delete event and log rows of generations that ended before ``cutoff``."""
    for table in (GenerationEvent, GenerationLog):
        after = 0
        while True:
            with read_connection(engine) as conn:
                rows = conn.execute(
                    select(table.id, table.created_at, G.status, G.completed_at)
                    .join(G, G.id == table.generation_id)
                    .where(table.id > after)
                    .order_by(table.id)
                    .limit(batch)
                ).all()
            if not rows:
                break
            after = rows[-1].id
            doomed = [r.id for r in rows if _ended_before(r, cutoff)]
            if doomed and not report.dry_run:
                with write_transaction(engine) as conn:
                    conn.execute(delete(table).where(table.id.in_(doomed)))
            report.events.add(len(doomed))
            if len(rows) < batch or rows[-1].created_at >= cutoff:
                break


def prune_generations(
    engine: Engine, settings: Settings, cutoff: dt.datetime, batch: int, report: PruneReport
) -> None:
    """Delete generations that ended before ``cutoff`` and are not kept: rows first (their
    poses, events and logs by cascade, their bytes off the owner's count), then their bytes."""
    after = 0
    while True:
        with read_connection(engine) as conn:
            rows = conn.execute(
                select(G.id, G.user_id, G.created_at, G.status, G.completed_at, G.kept)
                .where(G.id > after)
                .order_by(G.id)
                .limit(batch)
            ).all()
        if not rows:
            break
        after = rows[-1].id
        doomed = {r.id: r.user_id for r in rows if not r.kept and _ended_before(r, cutoff)}
        if doomed:
            if report.dry_run:
                with read_connection(engine) as conn:
                    nbytes = conn.execute(
                        select(func.coalesce(func.sum(GeneratedPose.bytes), 0)).where(
                            GeneratedPose.generation_id.in_(list(doomed))
                        )
                    ).scalar_one()
                report.generations.add(len(doomed), int(nbytes or 0))
            else:
                gone, freed = _delete_generations(engine, doomed, cutoff)
                report.generations.add(len(gone), freed)
                remove_generation_bytes(settings, gone, report)
        if len(rows) < batch or rows[-1].created_at >= cutoff:
            break


def _delete_generations(
    engine: Engine, doomed: dict[int, int], cutoff: dt.datetime
) -> tuple[list[int], int]:
    freed = 0
    with write_transaction(engine) as conn:
        # The generations first, re-checked under their locks (one kept or reopened meanwhile
        # stays), then their owners' quota rows in id order: the order a generation's writes,
        # its tasks and deleting one by hand take.
        rows = conn.execute(
            select(G.id, G.user_id)
            .where(
                G.id.in_(list(doomed)),
                G.status.in_(_TERMINAL),
                G.completed_at < cutoff,
                G.kept == false(),
            )
            .order_by(G.id)
            .with_for_update()
        ).all()
        for user_id in sorted({int(r.user_id) for r in rows}):
            quota.lock_user(conn, user_id)
        by_user: dict[int, list[int]] = {}
        for r in rows:
            by_user.setdefault(r.user_id, []).append(r.id)
        for user_id, ids in sorted(by_user.items()):
            freed += quota.forget_results(conn, user_id, ids)
        gone = [r.id for r in rows]
        if gone:
            conn.execute(delete(G).where(G.id.in_(gone)))
    return gone, freed


def remove_generation_bytes(settings: Settings, ids: list[int], report: PruneReport) -> None:
    """After the rows are gone: each byte owner's files of these generations. A store that
    fails leaves orphans for the sweep, never a row without its bytes."""
    if not ids:
        return
    for remover in GENERATION_BYTES:
        try:
            remover(settings, ids)
        except (OSError, StorageUnavailable) as exc:
            log.warning("generation files not deleted", extra={"error": str(exc)})
            report.errors.append(f"files of {len(ids)} deleted generations: {exc}")


def prune_uploads(
    engine: Engine, settings: Settings, cutoff: dt.datetime, batch: int, report: PruneReport
) -> None:
    """Delete uploads created before ``cutoff`` that no project or pose refers to, one short
    transaction each through :func:`posegen.uploads.release` (the owner's lock, the reference
    rule re-checked under it)."""
    after = 0
    while True:
        with read_connection(engine) as conn:
            rows = conn.execute(
                select(
                    Upload.id,
                    Upload.bytes,
                    Upload.created_at,
                    uploads.referenced(Upload.id).label("used"),
                )
                .where(Upload.id > after)
                .order_by(Upload.id)
                .limit(batch)
            ).all()
        if not rows:
            break
        after = rows[-1].id
        for r in rows:
            if r.used or r.created_at >= cutoff:
                continue
            try:
                if report.dry_run or uploads.release(engine, settings, r.id):
                    report.uploads.add(1, int(r.bytes))
            except StorageUnavailable as exc:
                # The row stays (its file could not go): the next prune tries again.
                report.errors.append(f"upload {r.id}: {exc}")
                return
        if len(rows) < batch or rows[-1].created_at >= cutoff:
            break


__all__ = [
    "GENERATION_BYTES",
    "Tally",
    "prune_events",
    "prune_generations",
    "prune_uploads",
    "remove_generation_bytes",
]
