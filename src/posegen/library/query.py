"""Discovery reads: the category tree with live counts, and pose lists filtered and sorted in
keyset pages, each pose with its counts and the caller's own favourite and rating.

Sorts: ``popular`` (popularity, then newest id), ``newest`` (created_at, id), ``name`` (A-Z, id)
and ``relevance`` (with a text query: the engine's rank). Every sort pages by an opaque cursor
over its own key, walked through an index (``ix_pose_library_*``; ``posegen db verify`` EXPLAINs
them): category, favourites, tags and text are index conditions; difficulty, framing,
suitability and featured (few values each) are checked on the rows the walk reads.
Popularity moves while someone pages: a pose whose count changes between two pages may be
skipped or shown twice, never an error.

Unpublished library poses are seen by admins only; a user's private pose by its owner only,
by id (:func:`posegen.catalog.visible`), never in a listing.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Float,
    String,
    and_,
    column,
    func,
    literal,
    select,
    table,
    tuple_,
)

from posegen import catalog, pagination
from posegen.db.engine import read_connection
from posegen.db.models import PoseCategory, PoseFavorite, PoseLibrary, PoseRating
from posegen.exceptions import InvalidInput, NotFound
from posegen.library import attributes, search

L = PoseLibrary
C = PoseCategory
F = PoseFavorite
R = PoseRating
SORTS = ("popular", "newest", "name", "relevance")
_FTS = table(search.FTS_TABLE, column("rowid"))


@dataclass(frozen=True)
class PoseFilters:
    """What ``GET /library/poses`` narrows by; every field optional (None/empty: any)."""

    #: A category slug: the category and every category below it.
    category: str | None = None
    #: Every one of these tags.
    tags: tuple[str, ...] = ()
    difficulty: str | None = None
    framing: str | None = None
    suitability: str | None = None
    featured: bool | None = None
    #: Only the caller's favourites.
    favorites: bool = False
    q: str | None = None


@dataclass(frozen=True)
class CategoryNode:
    id: int
    slug: str
    name: str
    description: str
    sort_order: int
    parent_id: int | None
    #: 0 for a root category.
    depth: int
    #: Poses the caller can see in this category itself / in it and every category below it.
    pose_count: int
    total_pose_count: int
    children: list[int] = field(default_factory=list)


def category_tree(engine: Engine, *, include_private: bool) -> list[CategoryNode]:
    """Every category, depth first (siblings by ``sort_order``, then id), with live counts: one
    GROUP BY over the category index, so a count is never stale."""
    counted = select(L.category_id, func.count(L.id)).group_by(L.category_id)
    counted = counted.where(catalog.visible(include_private))
    with read_connection(engine) as conn:
        counts = {int(c): int(n) for c, n in conn.execute(counted)}
        rows = conn.execute(
            select(C.id, C.slug, C.name, C.description, C.sort_order, C.parent_id).order_by(
                C.sort_order, C.id
            )
        ).all()
    known = {r.id for r in rows}
    kids: dict[int | None, list[Any]] = defaultdict(list)
    for r in rows:
        kids[r.parent_id if r.parent_id in known else None].append(r)
    out: list[CategoryNode] = []

    def walk(r: Any, depth: int, seen: frozenset[int]) -> int:
        node = CategoryNode(
            r.id,
            r.slug,
            r.name,
            r.description or "",
            r.sort_order,
            r.parent_id if r.parent_id in known else None,
            depth,
            counts.get(r.id, 0),
            0,
            [k.id for k in kids[r.id] if k.id not in seen],
        )
        at = len(out)
        out.append(node)
        total = node.pose_count
        for k in kids[r.id]:
            if k.id not in seen:  # a cycle (never written by posegen) cannot loop forever
                total += walk(k, depth + 1, seen | {k.id})
        out[at] = CategoryNode(**{**node.__dict__, "total_pose_count": total})
        return total

    for root in kids[None]:
        walk(root, 0, frozenset({root.id}))
    return out


def subtree_ids(conn: Connection, slug: str) -> list[int]:
    """The ids of the category ``slug`` and of every category below it (empty: unknown)."""
    rows = conn.execute(select(C.id, C.slug, C.parent_id)).all()
    start = [r.id for r in rows if r.slug == slug]
    kids: dict[int, list[int]] = defaultdict(list)
    for r in rows:
        if r.parent_id is not None:
            kids[r.parent_id].append(r.id)
    found: list[int] = []
    while start:
        node = start.pop()
        if node not in found:
            found.append(node)
            start.extend(kids[node])
    return sorted(found)


def _select(viewer_id: int | None, favorites_only: bool, extra: list[Any]) -> Any:
    mine_fav = and_(F.pose_id == L.id, F.user_id == (viewer_id or 0))
    stmt = select(
        *catalog.POSE_COLUMNS,
        F.user_id.is_not(None).label("is_favorite"),
        R.stars.label("my_rating"),
        *extra,
    )
    stmt = catalog.joined(stmt)
    stmt = stmt.join(F, mine_fav) if favorites_only else stmt.outerjoin(F, mine_fav)
    return stmt.outerjoin(R, and_(R.pose_id == L.id, R.user_id == (viewer_id or 0)))


def list_poses(
    engine: Engine,
    filters: PoseFilters,
    *,
    viewer_id: int | None,
    include_private: bool,
    sort: str | None = None,
    cursor: str | None = None,
    limit: int = pagination.DEFAULT_LIMIT,
) -> pagination.Page[catalog.PoseView]:
    """A page of the poses the caller can see that pass ``filters``, in ``sort`` order (default:
    relevance with a text query, else popular)."""
    with read_connection(engine) as conn:
        stmt, sort = statement(
            conn,
            filters,
            viewer_id=viewer_id,
            include_private=include_private,
            sort=sort,
            cursor=cursor,
            limit=limit,
        )
        rows = conn.execute(stmt).all()
    keyed = [(catalog.pose_view(r), r) for r in rows]
    page = pagination.page(keyed, limit, lambda vr: _key(sort, vr[0], vr[1]))
    return pagination.Page([v for v, _ in page.items], page.next_cursor)


def statement(
    conn: Connection,
    filters: PoseFilters,
    *,
    viewer_id: int | None,
    include_private: bool,
    sort: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[Any, str]:
    """The SELECT of :func:`list_poses` (one row beyond ``limit``) and the sort it applies."""
    dialect = conn.dialect.name
    match = search.text_match(dialect, filters.q) if filters.q else None
    sort = sort or ("relevance" if match is not None else "popular")
    if sort not in SORTS:
        raise InvalidInput(f"sort must be one of {', '.join(SORTS)}", kind="invalid-input")
    if sort == "relevance" and match is None:
        raise InvalidInput("sort=relevance needs a text query (q)", kind="invalid-input")
    if filters.favorites and viewer_id is None:
        raise InvalidInput("favourites need a signed-in caller", kind="invalid-input")
    score = match.score.label("score") if match is not None else literal(0.0, Float)
    stmt = _select(viewer_id, filters.favorites, [score])
    if match is not None:
        if match.join_fts:
            stmt = stmt.join(_FTS, _FTS.c.rowid == L.id)
        stmt = stmt.where(match.where)
    # Listings never show private poses (their owners have /me/poses).
    stmt = stmt.where(catalog.visible(include_private))
    if filters.tags:
        stmt = stmt.where(search.has_tags(dialect, filters.tags))
    for name in ("difficulty", "framing", "suitability"):
        value = getattr(filters, name)
        if value:
            stmt = stmt.where(getattr(L, name) == attributes.check_choice(name, value))
    if filters.featured is not None:
        stmt = stmt.where(L.featured.is_(filters.featured))
    if filters.category:
        ids = subtree_ids(conn, filters.category)
        stmt = stmt.where(L.category_id.in_(ids)) if ids else stmt.where(L.id.is_(None))
    stmt = _order(stmt, sort, match.score if match is not None else None, cursor, limit)
    return stmt, sort


def _order(stmt: Any, sort: str, score: Any, cursor: str | None, limit: int) -> Any:
    keys: tuple[Any, ...]
    types: tuple[type, ...]
    sql_types: tuple[Any, ...]
    if sort == "popular":
        keys, types, ascending = (L.popularity, L.id), (int, int), False
        sql_types = (BigInteger(), BigInteger())
    elif sort == "newest":
        keys, types, ascending = (L.created_at, L.id), (dt.datetime, int), False
        sql_types = (L.created_at.type, BigInteger())
    elif sort == "name":
        keys, types, ascending = (L.name, L.id), (str, int), True
        sql_types = (String(), BigInteger())
    else:
        keys, types, ascending = (score, L.id), (float, int), False
        sql_types = (Float(), BigInteger())
    if cursor:
        after = pagination.decode(cursor, *types)
        bound = tuple_(*(literal(v, t) for v, t in zip(after, sql_types, strict=True)))
        stmt = stmt.where(tuple_(*keys) > bound if ascending else tuple_(*keys) < bound)
    order = [k.asc() if ascending else k.desc() for k in keys]
    return stmt.order_by(*order).limit(limit + 1)


def _key(sort: str, view: catalog.PoseView, row: Any) -> tuple[Any, ...]:
    if sort == "popular":
        return (view.popularity, view.id)
    if sort == "newest":
        return (view.created_at, view.id)
    if sort == "name":
        return (view.name, view.id)
    return (float(row.score), view.id)


def get_pose(
    engine: Engine, pose_id: int, *, viewer_id: int | None, include_private: bool
) -> catalog.PoseView:
    """One pose with the caller's favourite and rating; 404 when the caller cannot see it."""
    stmt = _select(viewer_id, False, []).where(
        L.id == pose_id, catalog.visible(include_private, viewer_id)
    )
    with read_connection(engine) as conn:
        row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"pose {pose_id} not found")
    return catalog.pose_view(row)


__all__ = [
    "SORTS",
    "CategoryNode",
    "PoseFilters",
    "category_tree",
    "get_pose",
    "list_poses",
    "statement",
    "subtree_ids",
]
