"""Mount the dashboard on the API's FastAPI app: pages under ``/ui``, static files, ``/`` redirect.

The dashboard lives in the API process and reads through the same core modules as the API; it
authenticates browsers with a session cookie (see :mod:`posegen.web.session`), never with an API
key in page script.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from posegen.config import Settings
from posegen.web import (
    auth_pages,
    background_pages,
    community_pages,
    credit_pages,
    generation_pages,
    library_pages,
    media,
    operator_pages,
    submit_pages,
)
from posegen.web.context import PREFIX, STATIC_DIR, TEMPLATES_DIR, WebContext
from posegen.web.filters import install_filters
from posegen.web.session import SessionManager, load_secret


def include_web(app: FastAPI, settings: Settings, engine: Engine) -> WebContext:
    """Add the dashboard to ``app`` (call once, from ``create_app``)."""
    templates = Jinja2Templates(directory=TEMPLATES_DIR)
    install_filters(templates.env)
    ctx = WebContext(
        settings=settings,
        engine=engine,
        sessions=SessionManager(load_secret(settings), engine),
        templates=templates,
    )
    app.state.posegen_web = ctx
    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="web-static")
    for module in (
        auth_pages,
        operator_pages,
        generation_pages,
        background_pages,
        submit_pages,
        media,
        library_pages,
        community_pages,
        credit_pages,
    ):
        app.include_router(module.router, prefix=PREFIX)
    taken = {r.path for r in app.router.routes if isinstance(r, Route)}
    if "/" not in taken:
        app.add_api_route("/", _to_dashboard, include_in_schema=False)
    if "/favicon.ico" not in taken:
        # Browsers ask for it on pages without a <link rel=icon> (an image opened on its own).
        app.add_api_route("/favicon.ico", _favicon, include_in_schema=False)
    return ctx


async def _favicon() -> Response:
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")


async def _to_dashboard() -> Response:
    """The bare origin opens the dashboard."""
    return RedirectResponse(f"{PREFIX}/", status_code=307)
