"""``result_variants`` rows: written in a ``background`` task's fenced completion, read by the
API (a result's variants, one variant's file) and the archive."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, select

from posegen.db.engine import read_connection
from posegen.db.models import GeneratedPose, ResultVariant
from posegen.db.types import utcnow
from posegen.exceptions import NotFound

V = ResultVariant
P = GeneratedPose


@dataclass(frozen=True)
class Variant:
    id: int
    result_id: int
    kind: str
    variant_key: str
    params: dict[str, Any]
    image_path: str
    thumbnail_path: str
    bytes: int
    width: int
    height: int
    created_at: dt.datetime
    #: The result's variation key (file names), filled where the read joins the result.
    variation_key: str = ""


_COLS = (
    V.id,
    V.result_id,
    V.kind,
    V.variant_key,
    V.params,
    V.image_path,
    V.thumbnail_path,
    V.bytes,
    V.width,
    V.height,
    V.created_at,
)


def _view(r: Any, variation_key: str = "") -> Variant:
    return Variant(
        int(r.id),
        int(r.result_id),
        str(r.kind),
        str(r.variant_key),
        dict(r.params or {}),
        str(r.image_path),
        str(r.thumbnail_path),
        int(r.bytes),
        int(r.width),
        int(r.height),
        r.created_at,
        variation_key,
    )


def insert(
    conn: Connection,
    *,
    result_id: int,
    generation_id: int,
    kind: str,
    variant_key: str,
    params: dict[str, Any],
    image_path: str,
    thumbnail_path: str,
    size: int,
    width: int,
    height: int,
    task_id: int | None,
) -> tuple[int, int]:
    """Insert one variant in the caller's transaction; (its id, bytes newly counted): a
    variant already there (the same change made again) is kept and counts nothing."""
    values = {
        "result_id": result_id,
        "generation_id": generation_id,
        "kind": kind,
        "variant_key": variant_key,
        "params": params,
        "image_path": image_path,
        "thumbnail_path": thumbnail_path,
        "bytes": size,
        "width": width,
        "height": height,
        "task_id": task_id,
        "created_at": utcnow(),
    }
    stmt: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(V)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(V)
    stmt = stmt.values(values).on_conflict_do_nothing(index_elements=["result_id", "variant_key"])
    new_id = conn.execute(stmt.returning(V.id)).scalar()
    if new_id is not None:
        return int(new_id), size
    found = conn.execute(
        select(V.id).where(V.result_id == result_id, V.variant_key == variant_key)
    ).scalar_one()
    return int(found), 0


def by_result(engine: Engine, generation_id: int) -> dict[int, list[Variant]]:
    """Every variant of a generation's results, by result id, oldest first."""
    out: dict[int, list[Variant]] = {}
    with read_connection(engine) as conn:
        for r in conn.execute(
            select(*_COLS).where(V.generation_id == generation_id).order_by(V.result_id, V.id)
        ):
            out.setdefault(int(r.result_id), []).append(_view(r))
    return out


def one(engine: Engine, generation_id: int, result_id: int, variant_id: int) -> Variant:
    """One variant of one result of the generation (NotFound otherwise)."""
    with read_connection(engine) as conn:
        r = conn.execute(
            select(*_COLS, P.variation_key)
            .join(P, P.id == V.result_id)
            .where(V.generation_id == generation_id, V.result_id == result_id, V.id == variant_id)
        ).first()
    if r is None:
        raise NotFound(f"result {result_id} has no variant {variant_id}", kind="variant-not-found")
    return _view(r, str(r.variation_key))


def of_generation(engine: Engine, generation_id: int) -> list[Variant]:
    """The generation's variants with their results' variation keys (the archive's order)."""
    with read_connection(engine) as conn:
        rows = conn.execute(
            select(*_COLS, P.variation_key)
            .join(P, P.id == V.result_id)
            .where(V.generation_id == generation_id)
            .order_by(V.result_id, V.id)
        ).all()
    return [_view(r, str(r.variation_key)) for r in rows]


def paths(conn: Connection, generation_ids: Sequence[int]) -> set[str]:
    """Every file the variants of these generations name (the orphan sweep's reference rule)."""
    out: set[str] = set()
    for image, thumb in conn.execute(
        select(V.image_path, V.thumbnail_path).where(V.generation_id.in_(list(generation_ids)))
    ):
        out.update((image, thumb))
    return out
