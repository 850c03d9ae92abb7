"""Library discovery on both engines: filters, every sort walked in keyset pages against the
order the sort promises, the category tree's live counts, text search, popularity counted once
per generation in the submit transaction, and (PostgreSQL) index-backed plans for every
filter and sort combination."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, insert, select, update

from posegen import accounts, catalog, queue
from posegen.config import Settings
from posegen.db.models import (
    GenerationType,
    PoseCategory,
    PoseFavorite,
    PoseGeneration,
    PoseLibrary,
    Project,
)
from posegen.exceptions import InvalidInput
from posegen.library import favorites, query, seed_library
from posegen.library import parse_library as parse

L = PoseLibrary


def _project(engine: Engine, user_id: int) -> int:
    with engine.begin() as conn:
        return int(
            conn.execute(
                insert(Project).values(user_id=user_id, name="p").returning(Project.id)
            ).scalar_one()
        )


def _all_pages(engine: Engine, filters: query.PoseFilters, viewer: int, **kw: Any) -> list[Any]:
    out: list[Any] = []
    cursor = None
    while True:
        page = query.list_poses(
            engine, filters, viewer_id=viewer, include_private=False, cursor=cursor, limit=4, **kw
        )
        out += page.items
        cursor = page.next_cursor
        if cursor is None:
            return out


@pytest.fixture
def world(engine: Engine, settings: Settings) -> dict[str, Any]:
    """The built-in library, a child category under "standing" holding two of its poses, a
    few attributes set, uses from generations and a favourite."""
    seed_library(engine)
    user = accounts.create_user(engine, "Uma", "uma@example.com").account.id
    with engine.begin() as conn:
        standing = conn.execute(
            select(PoseCategory.id).where(PoseCategory.slug == "standing")
        ).scalar_one()
        child = conn.execute(
            insert(PoseCategory)
            .values(slug="standing-power", name="Power", description="", parent_id=standing)
            .returning(PoseCategory.id)
        ).scalar_one()
        ids = list(
            conn.execute(select(L.id).where(L.category_id == standing).order_by(L.id)).scalars()
        )
    moved = ids[:2]
    for pose_id in moved:
        catalog.update_pose(engine, pose_id, child, difficulty="advanced", featured=True)
    catalog.update_pose(engine, ids[2], framing="portrait")  # written into its keypoints too
    project = _project(engine, user)
    for pose_ids in ([ids[3], moved[0]], [ids[3]], [moved[1], ids[3], 9]):
        queue.submit(
            engine,
            settings,
            queue.GenerationRequest(user, project, GenerationType.LIBRARY, pose_ids, 2),
        )
    favorites.set_favorite(engine, user, 9, True, include_private=False)
    return {"user": user, "moved": moved, "ids": ids, "portrait": ids[2]}


def test_filters_sorts_and_pages(engine: Engine, world: dict[str, Any]) -> None:
    user = world["user"]
    everything = _all_pages(engine, query.PoseFilters(), user, sort="name")
    by_id = {p.id: p for p in everything}
    assert len(everything) == len(by_id) > 30

    # Each sort walked 4 at a time gives exactly the order it promises, nothing twice.
    want = {
        "popular": sorted(everything, key=lambda p: (-p.popularity, -p.id)),
        "newest": sorted(everything, key=lambda p: (p.created_at, p.id), reverse=True),
        "name": sorted(everything, key=lambda p: (p.name, p.id)),
    }
    for sort, expected in want.items():
        got = _all_pages(engine, query.PoseFilters(), user, sort=sort)
        assert [p.id for p in got] == [p.id for p in expected], sort
    top = _all_pages(engine, query.PoseFilters(), user)[0]
    # Uses once per generation (ids[3] in all three) plus the favourite of pose 9.
    assert (top.id, top.popularity) == (world["ids"][3], 3)
    assert by_id[9].popularity == 2 and by_id[9].use_count == 1 and by_id[9].is_favorite

    # A category includes the categories below it; the tree counts them live.
    standing = _all_pages(engine, query.PoseFilters(category="standing"), user)
    child = _all_pages(engine, query.PoseFilters(category="standing-power"), user)
    assert {p.id for p in child} == set(world["moved"])
    assert set(world["moved"]) < {p.id for p in standing}
    tree = {c.slug: c for c in query.category_tree(engine, include_private=False)}
    assert tree["standing-power"].parent_id == tree["standing"].id
    assert tree["standing-power"].depth == 1 and tree["standing-power"].pose_count == 2
    assert tree["standing"].total_pose_count == tree["standing"].pose_count + 2 == len(standing)
    order = [c.slug for c in query.category_tree(engine, include_private=False)]
    assert order.index("standing-power") == order.index("standing") + 1  # depth first

    # Attribute filters, alone and combined, with the favourites of the caller.
    featured = _all_pages(engine, query.PoseFilters(featured=True, difficulty="advanced"), user)
    # The two moved poses, and any built-in pose that ships featured and advanced.
    shipped = {p.id for p in everything if p.featured and p.difficulty == "advanced"}
    assert set(world["moved"]) <= shipped
    assert {p.id for p in featured} == shipped
    portraits = _all_pages(engine, query.PoseFilters(framing="portrait"), user, sort="newest")
    assert world["portrait"] in {p.id for p in portraits}
    assert all(p.framing == "portrait" == p.keypoints["framing"] for p in portraits)
    mine = _all_pages(engine, query.PoseFilters(favorites=True), user)
    assert [p.id for p in mine] == [9]
    tag = by_id[9].tags[0]
    tagged = _all_pages(engine, query.PoseFilters(tags=(tag, by_id[9].tags[-1])), user)
    assert 9 in {p.id for p in tagged} and all(tag in p.tags for p in tagged)
    assert _all_pages(engine, query.PoseFilters(category="no-such-thing"), user) == []
    with pytest.raises(InvalidInput):
        query.list_poses(
            engine, query.PoseFilters(), viewer_id=user, include_private=False, sort="relevance"
        )


def test_text_search_ranks_and_pages(engine: Engine, world: dict[str, Any]) -> None:
    user = world["user"]
    whole = query.list_poses(
        engine, query.PoseFilters(q="walking"), viewer_id=user, include_private=False, limit=200
    ).items
    assert len(whole) >= 3
    # A word in the name (stemmed: "walk", "walking") outranks the same word only in the
    # description or tags.
    named = [i for i, p in enumerate(whole) if "walk" in p.name.lower()]
    others = [i for i, p in enumerate(whole) if "walk" not in p.name.lower()]
    assert named and (not others or max(named) < min(others))
    paged = _all_pages(engine, query.PoseFilters(q="walking"), user)
    assert [p.id for p in paged] == [p.id for p in whole]
    # Stemming on both engines; every word must match; query syntax is just text.
    assert {p.id for p in _all_pages(engine, query.PoseFilters(q="walks"), user)} == {
        p.id for p in whole
    }
    assert _all_pages(engine, query.PoseFilters(q="walking zebra"), user) == []
    # FTS5 / tsquery operators are words here: no error, and only poses with the word "near".
    hostile = _all_pages(engine, query.PoseFilters(q='"NEAR( OR * -'), user)
    assert all("near" in f"{p.name} {p.description} {p.tags}".lower() for p in hostile)
    assert _all_pages(engine, query.PoseFilters(q='"QQZX( OR * -'), user) == []
    # Renaming a pose re-indexes it (SQLite: the FTS triggers; PostgreSQL: the generated column).
    catalog.update_pose(engine, 9, name="Zebra stance")
    assert [p.id for p in _all_pages(engine, query.PoseFilters(q="zebra"), user)] == [9]


def test_popularity_counts_each_generation_once(
    engine: Engine, settings: Settings, world: dict[str, Any]
) -> None:
    user, ids = world["user"], world["ids"]
    project = _project(engine, user)
    limited = queue.SubmitLimits(max_active=4)  # three are active already: one more fits
    req = queue.GenerationRequest(user, project, GenerationType.LIBRARY, [ids[0], ids[1]], 3)
    queue.submit(engine, settings, req, limited)
    with pytest.raises(Exception, match="active"):
        queue.submit(engine, settings, req, limited)  # refused: counts nothing
    queue.submit(
        engine,
        settings,
        queue.GenerationRequest(user, project, GenerationType.TEXT, [], 1, prompt="x"),
    )
    queue.submit_many(engine, settings, [req, req])
    with engine.connect() as conn:
        selected = conn.execute(select(PoseGeneration.selected_pose_ids)).scalars().all()
        rows = conn.execute(select(L.id, L.use_count, L.favorite_count, L.popularity)).all()
        favs = dict(
            conn.execute(
                select(PoseFavorite.pose_id, func.count()).group_by(PoseFavorite.pose_id)
            ).all()
        )
    for pose_id, uses, fav_count, popularity in rows:
        assert uses == sum(pose_id in s for s in selected), pose_id
        assert fav_count == favs.get(pose_id, 0)
        assert popularity == uses + fav_count
    assert dict((r[0], r[1]) for r in rows)[ids[0]] == 4  # 1 (world) + 1 + 2 bulk


def test_loader_reads_optional_keys_with_defaults(engine: Engine, monkeypatch: Any) -> None:
    import posegen.library as library

    categories, poses = library.builtin_library()
    raw: dict[str, Any] = {
        "categories": [
            {"slug": "people", "name": "People", "description": "", "sort_order": 5},
            *[
                {"slug": c.slug, "name": c.name, "description": c.description, "parent": "people"}
                for c in categories[:2]
            ],
        ],
        "poses": [
            {
                "slug": p.slug,
                "name": p.name,
                "category": p.category,
                "description": p.description,
                "tags": list(p.tags),
                "keypoints": p.keypoints,
            }
            for p in poses
            if p.category in {c.slug for c in categories[:2]}
        ],
    }
    raw["poses"][0].update(
        difficulty="advanced",
        suitability="female",
        featured=True,
        premium=True,
        source="studio",
        licence="CC-BY-4.0",
        author="Kim",
    )
    cats, parsed = parse(raw)
    assert cats[1].parent == "people" and cats[0].sort_order == 5
    assert (parsed[1].difficulty, parsed[1].suitability, parsed[1].featured) == (
        "beginner",
        "any",
        False,
    )
    assert (parsed[1].source, parsed[1].author) == ("builtin", "posegen")
    monkeypatch.setattr(library, "builtin_library", lambda: parse(raw))
    seed_library(engine)
    seed_library(engine)  # idempotent
    tree = {c.slug: c for c in query.category_tree(engine, include_private=True)}
    assert tree[cats[1].slug].parent_id == tree["people"].id and tree["people"].sort_order == 5
    assert tree["people"].total_pose_count == len(parsed)
    first = catalog.get_pose(engine, _id_of(engine, parsed[0].slug), include_private=True)
    assert (first.difficulty, first.suitability, first.featured, first.premium) == (
        "advanced",
        "female",
        True,
        True,
    )
    assert (first.source, first.licence, first.author) == ("studio", "CC-BY-4.0", "Kim")
    assert first.framing == first.keypoints["framing"]

    for bad in (
        {"categories": [{"slug": "a", "name": "A", "description": "", "parent": "b"}], "poses": []},
        {"categories": [{"slug": "a", "name": "A", "description": "", "parent": "a"}], "poses": []},
        {**raw, "poses": [{**raw["poses"][0], "difficulty": "medium"}]},
    ):
        with pytest.raises(InvalidInput):
            parse(bad)


def _id_of(engine: Engine, slug: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(L.id).where(L.slug == slug)).scalar_one())


SORT_FILTERS = [
    query.PoseFilters(),
    query.PoseFilters(category="standing"),
    query.PoseFilters(favorites=True),
    query.PoseFilters(tags=("front",)),
    query.PoseFilters(q="arms raised"),
    query.PoseFilters(difficulty="advanced", framing="full_body", featured=True),
    query.PoseFilters(category="standing", tags=("front",), favorites=True, q="stand"),
]


def test_every_filter_and_sort_is_index_backed_on_postgresql(
    engine: Engine, world: dict[str, Any]
) -> None:
    """EXPLAIN of the real statement with sequential scans disabled: pose_library is read
    through an index (a sort's, the category's, the favourites', GIN) in every combination."""
    if engine.dialect.name != "postgresql":
        pytest.skip("EXPLAIN plans are checked on PostgreSQL")
    with engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")

        def explain(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> Any:
            return "EXPLAIN (FORMAT JSON) " + statement, params

        for filters, sort in itertools.product(
            SORT_FILTERS, ("popular", "newest", "name", "relevance")
        ):
            if sort == "relevance" and not filters.q:
                continue
            stmt, _ = query.statement(
                conn,
                filters,
                viewer_id=world["user"],
                include_private=False,
                sort=sort,
                cursor=None,
                limit=50,
            )
            event.listen(conn, "before_cursor_execute", explain, retval=True)
            try:
                plan = conn.execute(stmt).scalar_one()
            finally:
                event.remove(conn, "before_cursor_execute", explain)
            plan = plan if isinstance(plan, list) else json.loads(plan)
            scans = _scans(plan, "pose_library")
            assert scans and "Seq Scan" not in scans, (filters, sort, scans)


def _scans(node: Any, relation: str) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("Relation Name") == relation:
            found.append(str(node.get("Node Type")))
        for value in node.values():
            found += _scans(value, relation)
    elif isinstance(node, list):
        for item in node:
            found += _scans(item, relation)
    return found


def test_category_tree_and_favourites_hide_private_poses(engine: Engine) -> None:
    seed_library(engine)
    user = accounts.create_user(engine, "Uma", "uma@example.com").account.id
    with engine.begin() as conn:
        conn.execute(update(L).where(L.id == 1).values(is_public=False))
    public = {c.slug: c.pose_count for c in query.category_tree(engine, include_private=False)}
    every = {c.slug: c.pose_count for c in query.category_tree(engine, include_private=True)}
    assert sum(every.values()) == sum(public.values()) + 1
    from posegen.exceptions import NotFound

    with pytest.raises(NotFound):
        favorites.set_favorite(engine, user, 1, True, include_private=False)
    with pytest.raises(NotFound):
        query.get_pose(engine, 1, viewer_id=user, include_private=False)
