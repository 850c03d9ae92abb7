"""What every page shares: the web context on ``app.state``, page dependencies, rendering, and
the route class that turns errors into HTML pages instead of problem+json."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine
from starlette.responses import RedirectResponse, Response

from posegen import __version__, credits, observe
from posegen.config import Settings
from posegen.exceptions import Forbidden, PosegenError
from posegen.metrics.ttlcache import TTLCache
from posegen.web.session import CSRF_FIELD, SessionManager, WebSession

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
PREFIX = "/ui"
OVERVIEW_TTL_SECONDS = 5.0

#: Pages may load only what this origin serves: every asset ships inside the package.
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)


@dataclass
class WebContext:
    """The dashboard's dependencies, built once per app by :func:`posegen.web.include_web`."""

    settings: Settings
    engine: Engine
    sessions: SessionManager
    templates: Jinja2Templates
    #: The overview's figures for a few seconds: many open operator tabs, one query set.
    overview_cache: TTLCache = field(default_factory=lambda: TTLCache(OVERVIEW_TTL_SECONDS))
    extras: dict[str, Any] = field(default_factory=dict)


def web_context(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.posegen_web
    return ctx


class SignInRequired(Exception):
    """Raised by page dependencies when no valid session exists; answered with a redirect."""


async def _session(request: Request) -> WebSession | None:
    ctx = web_context(request)
    session = await run_in_threadpool(ctx.sessions.read, request)
    request.state.web_session = session
    return session


async def _signed_in(
    request: Request,
    session: Annotated[WebSession | None, Depends(_session)],
) -> WebSession:
    if session is None or session.account is None:
        raise SignInRequired
    observe.bind(user_id=session.account.id)  # the page's log lines name the user
    if _wants_page(request):
        request.state.credit_header = await run_in_threadpool(
            credit_header, web_context(request), session.account.id
        )
    return session


def _wants_page(request: Request) -> bool:
    """Whether the header's balance may be drawn: a page load (browsers send text/html, plain
    clients */*), not an image, a stream or a download of the same session (a gallery loads
    dozens of images: none of them reads the balance)."""
    accept = request.headers.get("accept", "*/*")
    return "text/html" in accept or accept.strip() == "*/*"


@dataclass(frozen=True)
class CreditHeader:
    """The header's balance and plan; absent (None) for a user credits do not concern."""

    balance: int
    plan: str
    quota_left: int | None
    quota_daily: int | None
    quota_until: str | None


def credits_in_play(settings: Settings) -> bool:
    return bool(
        settings.credits_per_pose
        or settings.credits_per_export
        or settings.credits_background_surcharge
    )


def credit_header(ctx: WebContext, user_id: int) -> CreditHeader | None:
    """Balance and plan for the header: shown when anything costs credits, or the user has a
    balance or a quota plan; with every price at 0 a user who never had credits sees nothing."""
    balance = credits.balance(ctx.engine, user_id)
    standing = credits.plans.standing(ctx.engine, ctx.settings, user_id)
    plan = standing.plan
    if not (credits_in_play(ctx.settings) or balance or plan.is_quota):
        return None
    return CreditHeader(
        balance=balance,
        plan="quota" if plan.is_quota else "payg",
        quota_left=standing.left_today,
        quota_daily=plan.daily_poses if plan.is_quota else None,
        quota_until=plan.valid_until.isoformat() if plan.is_quota and plan.valid_until else None,
    )


async def _admin(session: Annotated[WebSession, Depends(_signed_in)]) -> WebSession:
    if not session.is_admin:
        raise Forbidden("this page is for operators (admin role)")
    return session


MaybeSession = Annotated[WebSession | None, Depends(_session)]
SignedIn = Annotated[WebSession, Depends(_signed_in)]
Admin = Annotated[WebSession, Depends(_admin)]
Ctx = Annotated[WebContext, Depends(web_context)]


def check_csrf(ctx: WebContext, session: WebSession | None, form: dict[str, Any]) -> None:
    """Refuse a form POST whose token was not made for this session."""
    token = form.get(CSRF_FIELD)
    ctx.sessions.check_csrf(session, token if isinstance(token, str) else None)


def form_str(form: dict[str, Any], name: str) -> str | None:
    """A text field of a parsed form (None when absent or a file)."""
    value = form.get(name)
    return value if isinstance(value, str) else None


def render(
    request: Request,
    name: str,
    values: dict[str, Any] | None = None,
    *,
    status: int = 200,
    session: WebSession | None = None,
) -> Response:
    """Render a template with what the layout needs (user, CSRF token, navigation)."""
    ctx = web_context(request)
    session = session or getattr(request.state, "web_session", None)
    context: dict[str, Any] = {
        "session": session,
        "user": session.account if session else None,
        "is_admin": bool(session and session.is_admin),
        "csrf_field": CSRF_FIELD,
        "csrf_token": ctx.sessions.csrf_token(session) if session else "",
        "version": __version__,
        "prefix": PREFIX,
        "path": request.url.path,
        "credit_header": getattr(request.state, "credit_header", None),
    }
    context.update(values or {})
    response = ctx.templates.TemplateResponse(request, name, context, status_code=status)
    return secure_headers(response)


def secure_headers(response: Response) -> Response:
    """Headers every dashboard response carries (the CSP only on pages: an image opened on its
    own is shown by the browser's built-in viewer, whose inline styles the CSP would block)."""
    if response.media_type == "text/html" or response.headers.get("content-type", "").startswith(
        "text/html"
    ):
        response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def sign_in_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/sign-in?next={quote(target, safe='')}", status_code=303)


def error_page(request: Request, exc: PosegenError) -> Response:
    """An HTML page for a posegen error; server-side details stay in the log."""
    status = exc.http_status
    message = exc.message
    if status >= 500:
        log.error("page failed", exc_info=exc, extra={"path": request.url.path, "kind": exc.kind})
        message = "Something went wrong on our side. Try again in a moment."
    values = {"status": status, "kind": exc.kind, "message": message}
    return render(request, "error.html", values, status=status)


class PageRoute(APIRoute):
    """Dashboard routes: posegen errors become HTML pages, a missing session a redirect."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired:
                return sign_in_redirect(request)
            except PosegenError as exc:
                return error_page(request, exc)
            return secure_headers(response)

        return route_handler
