"""Signing in with an API key, signing out, and the landing redirect."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from posegen.exceptions import Unauthorized
from posegen.web.context import (
    PREFIX,
    Ctx,
    MaybeSession,
    PageRoute,
    WebContext,
    check_csrf,
    form_str,
    render,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def safe_next(target: str | None, fallback: str) -> str:
    """Only go back to a dashboard page: an open redirect would help phishing."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//"):
        if "\\" not in target and "\n" not in target and "\r" not in target:
            return target
    return fallback


def home_for(is_admin: bool) -> str:
    return f"{PREFIX}/overview" if is_admin else f"{PREFIX}/generations"


@router.get("/", name="web-home")
async def home(session: MaybeSession) -> Response:
    """Operators land on the overview, everyone else on their generations."""
    if session is None or session.account is None:
        return RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
    return RedirectResponse(home_for(session.is_admin), status_code=303)


@router.get("/sign-in", name="web-sign-in")
async def sign_in_form(
    request: Request, ctx: Ctx, session: MaybeSession, next: str | None = None
) -> Response:
    """The sign-in form (an anonymous session carries its CSRF token)."""
    if session is not None and session.account is not None:
        return RedirectResponse(safe_next(next, home_for(session.is_admin)), status_code=303)
    return _form(request, ctx, next, None, 200)


def _form(
    request: Request, ctx: WebContext, next: str | None, error: str | None, status: int
) -> Response:
    placeholder = Response()
    anonymous = ctx.sessions.start_anonymous(placeholder, request)
    response = render(
        request,
        "sign_in.html",
        {"next": safe_next(next, ""), "error": error},
        status=status,
        session=anonymous,
    )
    response.headers.append("set-cookie", placeholder.headers["set-cookie"])
    return response


@router.post("/sign-in")
async def sign_in(request: Request, ctx: Ctx, session: MaybeSession) -> Response:
    """Check the key, then swap the anonymous session for a signed-in one."""
    form = dict(await request.form())
    check_csrf(ctx, session, form)
    next_url = form_str(form, "next")
    api_key = form_str(form, "api_key")
    if not api_key or not api_key.strip():
        return _form(request, ctx, next_url, "Enter your API key.", 422)
    response = RedirectResponse("", status_code=303)
    try:
        signed = await run_in_threadpool(ctx.sessions.sign_in, response, request, api_key)
    except Unauthorized as exc:
        return _form(request, ctx, next_url, exc.message, 401)
    response.headers["location"] = safe_next(next_url, home_for(signed.is_admin))
    return response


@router.post("/sign-out", name="web-sign-out")
async def sign_out(request: Request, ctx: Ctx, session: MaybeSession) -> Response:
    """End this browser's session on the server too (a form POST with the CSRF token)."""
    form = dict(await request.form())
    check_csrf(ctx, session, form)
    response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
    await run_in_threadpool(ctx.sessions.sign_out, response, session)
    return response
