"""``result_exports`` rows: written inside the queue's transactions (a pose's write, an export
task's completion), read by the API. A row is of the original result (``variant_key`` ``''``)
or of one of its background variants (the variant's key and id). Unique on (result, variant
key, format): a retried write is a no-op."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from posegen.db.engine import read_connection
from posegen.db.models import GeneratedPose, PoseStatus, ResultExport, ResultVariant
from posegen.db.types import utcnow
from posegen.exceptions import NotFound

E = ResultExport
P = GeneratedPose
V = ResultVariant


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
class Source:
    """What an export is made from: a result (``variant_id`` None) or one of its variants."""

    result_id: int
    variation_key: str
    image_path: str
    pose_id: int | None
    variant_id: int | None = None
    variant_key: str = ""


@dataclass(frozen=True)
class ExportRow:
    result_id: int
    variation_key: str
    pose_id: int | None
    variation_index: int
    file: ExportFile
    #: ``''`` the original result, else the background variant's key (``bg-<digest>``).
    variant_key: str = ""
    variant_id: int | None = None


def insert(
    conn: Connection,
    generation_id: int,
    items: Sequence[tuple[int, ExportFile] | tuple[Source, ExportFile]],
) -> int:
    """Insert ``(result id or source, file)`` rows in the caller's transaction, skipping any
    (result, variant, format) already there. Returns the bytes of the rows it added."""
    if not items:
        return 0
    now = utcnow()
    rows = [
        {
            "result_id": src if isinstance(src, int) else src.result_id,
            "variant_key": "" if isinstance(src, int) else src.variant_key,
            "variant_id": None if isinstance(src, int) else src.variant_id,
            "generation_id": generation_id,
            "format": f.format,
            "path": f.path,
            "bytes": f.bytes,
            "width": f.width,
            "height": f.height,
            "content_type": f.content_type,
            "created_at": now,
        }
        for src, f in items
    ]
    stmt: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(E).on_conflict_do_nothing(index_elements=_UNIQUE)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(E).on_conflict_do_nothing(index_elements=_UNIQUE)
    stmt = stmt.returning(E.bytes)
    # One statement per row: RETURNING with executemany is not portable across the drivers.
    return sum(int(conn.execute(stmt.values(r)).scalar() or 0) for r in rows)


def formats_by_result(
    engine: Engine, generation_id: int, variant_id: int | None = None
) -> dict[int, list[ExportFile]]:
    """Every export of a generation's results (``variant_id`` None: the originals', else that
    variant's), by result id, formats in name order."""
    out: dict[int, list[ExportFile]] = {}
    which = E.variant_key == "" if variant_id is None else E.variant_id == variant_id
    with read_connection(engine) as conn:
        for r in conn.execute(
            select(*_COLS)
            .where(E.generation_id == generation_id, which)
            .order_by(E.result_id, E.format)
        ):
            out.setdefault(int(r.result_id), []).append(_file(r))
    return out


def by_variant(engine: Engine, generation_id: int) -> dict[int, list[ExportFile]]:
    """Every export of the generation's background variants, by variant id, by format."""
    out: dict[int, list[ExportFile]] = {}
    with read_connection(engine) as conn:
        for r in conn.execute(
            select(*_COLS, E.variant_id)
            .where(E.generation_id == generation_id, E.variant_id.is_not(None))
            .order_by(E.variant_id, E.format)
        ):
            out.setdefault(int(r.variant_id), []).append(_file(r))
    return out


def one(
    engine: Engine, generation_id: int, result_id: int, fmt: str, variant_id: int | None = None
) -> ExportRow:
    """The export of one result (or of its variant ``variant_id``) in one format (NotFound
    when it was not made)."""
    which = E.variant_key == "" if variant_id is None else E.variant_id == variant_id
    with read_connection(engine) as conn:
        r = conn.execute(
            select(*_COLS, P.variation_key, P.pose_id, P.variation_index)
            .join(P, P.id == E.result_id)
            .where(
                E.generation_id == generation_id,
                E.result_id == result_id,
                E.format == fmt,
                which,
            )
        ).first()
    if r is None:
        what = f"result {result_id}" if variant_id is None else f"variant {variant_id}"
        raise NotFound(f"{what} has no {fmt} export")
    return _row(r)


def of_formats(engine: Engine, generation_id: int, fmts: Sequence[str]) -> list[ExportRow]:
    """Exports of the generation in ``fmts`` (originals and variants), by format, result id,
    then the original before its variants (the archive's order)."""
    with read_connection(engine) as conn:
        rows = conn.execute(
            select(*_COLS, P.variation_key, P.pose_id, P.variation_index)
            .join(P, P.id == E.result_id)
            .where(E.generation_id == generation_id, E.format.in_(list(fmts)))
            .order_by(E.format, E.result_id, E.variant_key)
        ).all()
    return [_row(r) for r in rows]


def missing(conn: Connection, generation_id: int, fmt: str) -> list[Source]:
    """Completed results of the generation, and their background variants, without a ``fmt``
    export (originals first, then variants, by id)."""
    have = select(E.result_id).where(
        E.generation_id == generation_id, E.format == fmt, E.variant_key == ""
    )
    out = [
        Source(int(r.id), str(r.variation_key), str(r.image_path), r.pose_id)
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
    have_v = select(E.variant_id).where(
        E.generation_id == generation_id, E.format == fmt, E.variant_id.is_not(None)
    )
    out += [
        Source(
            int(r.result_id),
            str(r.variation_key),
            str(r.image_path),
            r.pose_id,
            int(r.id),
            str(r.variant_key),
        )
        for r in conn.execute(
            select(V.id, V.result_id, V.variant_key, V.image_path, P.variation_key, P.pose_id)
            .join(P, P.id == V.result_id)
            .where(V.generation_id == generation_id, V.id.not_in(have_v))
            .order_by(V.id)
        )
    ]
    return out


def formats_of_result(conn: Connection, result_id: int) -> list[str]:
    """The formats the original result was exported in (what its new variants follow)."""
    return [
        str(f)
        for f in conn.execute(
            select(E.format).where(E.result_id == result_id, E.variant_key == "").order_by(E.format)
        ).scalars()
    ]


_UNIQUE = ["result_id", "variant_key", "format"]
_COLS = (
    E.result_id,
    E.format,
    E.path,
    E.bytes,
    E.width,
    E.height,
    E.content_type,
    E.variant_key,
    E.variant_id,
)


def _row(r: Any) -> ExportRow:
    return ExportRow(
        int(r.result_id),
        str(r.variation_key),
        r.pose_id,
        int(r.variation_index),
        _file(r),
        str(r.variant_key or ""),
        None if r.variant_id is None else int(r.variant_id),
    )


def _file(r: Any) -> ExportFile:
    return ExportFile(r.format, r.path, int(r.bytes), int(r.width), int(r.height), r.content_type)
