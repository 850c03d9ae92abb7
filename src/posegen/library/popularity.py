"""Popularity: how many generations used a pose (each once) plus its favourites.

A use is counted in the submit transaction, by the queue, through this module (as it does for
the rollup): on PostgreSQL the submit is one statement, so :func:`uses_cte_pg` is a CTE of it;
everywhere else :func:`count_uses` runs in the caller's open transaction. ``popularity`` moves
with ``use_count`` (and with ``favorite_count``, :mod:`posegen.library.favorites`); a CHECK
holds ``popularity = use_count + favorite_count``.

Pose rows are locked in id order (a sorted array, an ordered ``FOR NO KEY UPDATE``), so two
submits naming the same poses in different orders never deadlock, and the lock does not block
workers' foreign-key checks (``KEY SHARE``) on results that name the pose.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, bindparam, text

#: The parameter the CTE reads: the generation's distinct pose ids, sorted.
PARAM = "library_use_pose_ids"


def use_params(pose_ids: Sequence[int]) -> dict[str, list[int]]:
    """Parameters of :func:`uses_cte_pg` for one generation's poses."""
    return {PARAM: sorted(set(pose_ids))}


def uses_cte_pg(inserted: str, p: str = "%({})s") -> str:
    """CTEs (``name AS (...)``, comma-separated) that count one use of each pose in
    ``PARAM`` when the CTE ``inserted`` produced a row (the generation was admitted)."""
    ids = p.format(PARAM)
    return (
        f"lib_locked AS (SELECT id FROM pose_library WHERE id = ANY(CAST({ids} AS bigint[])) "
        f"AND EXISTS (SELECT 1 FROM {inserted}) ORDER BY id FOR NO KEY UPDATE), "
        "lib_used AS (UPDATE pose_library SET use_count = use_count + 1, "
        "popularity = popularity + 1 WHERE id IN (SELECT id FROM lib_locked))"
    )


_COUNT = text(
    "UPDATE pose_library SET use_count = use_count + :n, popularity = popularity + :n "
    "WHERE id = :id"
).bindparams(bindparam("n"), bindparam("id"))


def count_uses(conn: Connection, generations: Iterable[Sequence[int]]) -> None:
    """Count one use per pose per generation (``generations``: each one's pose ids), in the
    caller's transaction; poses in id order."""
    uses = Counter(p for pose_ids in generations for p in set(pose_ids))
    if uses:
        conn.execute(_COUNT, [{"id": p, "n": n} for p, n in sorted(uses.items())])
