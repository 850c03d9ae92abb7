"""The pose library browser: filters, sorts, pages, each pose's map, and the signed-in user's
favourite toggle and star rating (CSRF-protected form POSTs that come back to the same view)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from posegen.exceptions import InvalidInput
from posegen.library import attributes, favorites, query
from posegen.pose import FRAMINGS
from posegen.web.context import PREFIX, Ctx, PageRoute, SignedIn, check_csrf, form_str, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE_SIZE = 48
SORT_LABELS = {
    "popular": "Most popular",
    "newest": "Newest",
    "name": "Name",
    "relevance": "Best match",
}


def _choice(value: str, allowed: tuple[str, ...]) -> str | None:
    return value if value in allowed else None


@router.get("/library", name="web-library")
async def library(
    request: Request,
    ctx: Ctx,
    session: SignedIn,
    q: str = "",
    category: str = "",
    difficulty: str = "",
    framing: str = "",
    sort: str = "",
    favorites: str = "",
    cursor: str | None = None,
) -> Response:
    """A page of poses with their maps; private poses only for admins."""
    admin = session.is_admin
    assert session.account is not None
    viewer = session.account.id
    text = q.strip()[:100]
    filters = query.PoseFilters(
        category=category or None,
        difficulty=_choice(difficulty, attributes.DIFFICULTIES),
        framing=_choice(framing, FRAMINGS),
        favorites=favorites == "1",
        q=text or None,
    )
    chosen = _choice(sort, query.SORTS)
    if chosen == "relevance" and not text:
        chosen = None

    def load() -> dict[str, object]:
        cats = query.category_tree(ctx.engine, include_private=admin)
        page = query.list_poses(
            ctx.engine,
            filters,
            viewer_id=viewer,
            include_private=admin,
            sort=chosen,
            cursor=cursor or None,
            limit=PAGE_SIZE,
        )
        return {"categories": cats, "poses": page.items, "next_cursor": page.next_cursor}

    values = await run_in_threadpool(load)
    params = {
        "q": text,
        "category": category,
        "difficulty": filters.difficulty or "",
        "framing": filters.framing or "",
        "sort": chosen or "",
        "favorites": "1" if filters.favorites else "",
    }
    here = f"{PREFIX}/library?" + urlencode({**params, **({"cursor": cursor} if cursor else {})})
    values.update(
        {
            **params,
            "cursor": cursor,
            "query_string": urlencode(params),
            "here": here,
            "difficulties": attributes.DIFFICULTIES,
            "framings": FRAMINGS,
            "sorts": SORT_LABELS,
        }
    )
    return render(request, "library.html", values, session=session)


def _back(form: dict[str, Any]) -> str:
    """Where a mark form returns to: the library view it was sent from (nowhere else)."""
    target = form_str(form, "next") or ""
    if not target.startswith(f"{PREFIX}/library") or "//" in target or "\\" in target:
        return f"{PREFIX}/library"
    return target


@router.post("/library/poses/{pose_id:int}/favorite", name="web-favorite")
async def favorite(request: Request, ctx: Ctx, session: SignedIn, pose_id: int) -> Response:
    """Add or remove a favourite (``on`` = 1 or 0)."""
    form = dict(await request.form())
    check_csrf(ctx, session, form)
    assert session.account is not None
    on = form_str(form, "on") == "1"
    await run_in_threadpool(
        favorites.set_favorite,
        ctx.engine,
        session.account.id,
        pose_id,
        on,
        include_private=session.is_admin,
    )
    return RedirectResponse(_back(form), 303)


@router.post("/library/poses/{pose_id:int}/rating", name="web-rating")
async def rating(request: Request, ctx: Ctx, session: SignedIn, pose_id: int) -> Response:
    """Rate 1-5 stars (or ``stars`` = 0: withdraw the rating)."""
    form = dict(await request.form())
    check_csrf(ctx, session, form)
    assert session.account is not None
    raw = form_str(form, "stars") or ""
    if raw not in ("0", "1", "2", "3", "4", "5"):
        raise InvalidInput("choose 1 to 5 stars", kind="invalid-input")
    stars = int(raw) or None
    await run_in_threadpool(
        favorites.set_rating,
        ctx.engine,
        session.account.id,
        pose_id,
        stars,
        include_private=session.is_admin,
    )
    return RedirectResponse(_back(form), 303)
