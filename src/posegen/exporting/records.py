"""``result_exports`` rows: written inside the queue's transactions (a pose's write, an export
task's completion), read by the API. Unique on (result, format): a retried write is a no-op."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from posegen.db.engine import read_connection
from posegen.db.models import GeneratedPose, PoseStatus, ResultExport
from posegen.db.types import utcnow
from posegen.exceptions import NotFound

E = ResultExport
P = GeneratedPose


@dataclass(frozen=True)
class ExportFile:
    """One stored export of one result (its row, before or after it is written)."""

    format: str
    path: str
    bytes: int
    width: int
    height: int
    content_type: str


@dataclass(frozen=True)
class ExportRow:
    result_id: int
    variation_key: str
    pose_id: int | None
    variation_index: int
    file: ExportFile


def insert(conn: Connection, generation_id: int, items: Sequence[tuple[int, ExportFile]]) -> int:
    """Insert ``(result id, file)`` rows in the caller's transaction, skipping any (result,
    format) already there. Returns the bytes of the rows it added."""
    if not items:
        return 0
    now = utcnow()
    rows = [
        {
            "result_id": rid,
            "generation_id": generation_id,
            "format": f.format,
            "path": f.path,
            "bytes": f.bytes,
            "width": f.width,
            "height": f.height,
            "content_type": f.content_type,
            "created_at": now,
        }
        for rid, f in items
    ]
    stmt: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(E).on_conflict_do_nothing(index_elements=["result_id", "format"])
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(E).on_conflict_do_nothing(index_elements=["result_id", "format"])
    stmt = stmt.returning(E.bytes)
    # One statement per row: RETURNING with executemany is not portable across the drivers.
    return sum(int(conn.execute(stmt.values(r)).scalar() or 0) for r in rows)


def formats_by_result(engine: Engine, generation_id: int) -> dict[int, list[ExportFile]]:
    """Every export of a generation's results, by result id, formats in name order."""
    out: dict[int, list[ExportFile]] = {}
    with read_connection(engine) as conn:
        for r in conn.execute(
            select(*_COLS).where(E.generation_id == generation_id).order_by(E.result_id, E.format)
        ):
            out.setdefault(int(r.result_id), []).append(_file(r))
    return out


def one(engine: Engine, generation_id: int, result_id: int, fmt: str) -> ExportRow:
    """The export of one result in one format (NotFound when it was not made)."""
    with read_connection(engine) as conn:
        r = conn.execute(
            select(*_COLS, P.variation_key, P.pose_id, P.variation_index)
            .join(P, P.id == E.result_id)
            .where(E.generation_id == generation_id, E.result_id == result_id, E.format == fmt)
        ).first()
    if r is None:
        raise NotFound(f"result {result_id} has no {fmt} export")
    return ExportRow(result_id, r.variation_key, r.pose_id, int(r.variation_index), _file(r))


def of_formats(engine: Engine, generation_id: int, fmts: Sequence[str]) -> list[ExportRow]:
    """Exports of the generation in ``fmts``, by format then result id (the archive's order)."""
    with read_connection(engine) as conn:
        rows = conn.execute(
            select(*_COLS, P.variation_key, P.pose_id, P.variation_index)
            .join(P, P.id == E.result_id)
            .where(E.generation_id == generation_id, E.format.in_(list(fmts)))
            .order_by(E.format, E.result_id)
        ).all()
    return [
        ExportRow(int(r.result_id), r.variation_key, r.pose_id, int(r.variation_index), _file(r))
        for r in rows
    ]


def missing(
    conn: Connection, generation_id: int, fmt: str
) -> list[tuple[int, str, str, int | None]]:
    """Completed results of the generation without a ``fmt`` export:
    ``(result id, variation key, image path, pose id)``."""
    have = select(E.result_id).where(E.generation_id == generation_id, E.format == fmt)
    return [
        (int(r.id), str(r.variation_key), str(r.image_path), r.pose_id)
        for r in conn.execute(
            select(P.id, P.variation_key, P.image_path, P.pose_id)
            .where(
                P.generation_id == generation_id,
                P.status == PoseStatus.COMPLETED,
                P.image_path.is_not(None),
                P.id.not_in(have),
            )
            .order_by(P.id)
        )
    ]


_COLS = (E.result_id, E.format, E.path, E.bytes, E.width, E.height, E.content_type)


def _file(r: Any) -> ExportFile:
    return ExportFile(r.format, r.path, int(r.bytes), int(r.width), int(r.height), r.content_type)
