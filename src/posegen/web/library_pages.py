"""The pose library browser: categories, text search, each pose's ControlNet map."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import Response

from posegen import catalog
from posegen.web.context import Ctx, PageRoute, SignedIn, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE_SIZE = 48


@router.get("/library", name="web-library")
async def library(
    request: Request,
    ctx: Ctx,
    session: SignedIn,
    q: str = "",
    category: str = "",
    cursor: str | None = None,
) -> Response:
    """A page of poses with their maps; private poses only for admins."""
    admin = session.is_admin

    def load() -> dict[str, object]:
        cats = catalog.list_categories(ctx.engine, include_private=admin)
        page = catalog.list_poses(
            ctx.engine,
            include_private=admin,
            category=category or None,
            q=q.strip()[:200] or None,
            cursor=cursor or None,
            limit=PAGE_SIZE,
        )
        return {"categories": cats, "poses": page.items, "next_cursor": page.next_cursor}

    values = await run_in_threadpool(load)
    values.update({"q": q, "category": category, "cursor": cursor})
    return render(request, "library.html", values, session=session)
