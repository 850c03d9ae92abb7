"""Credit pages: a user's own balance, plan and ledger (keyset pages); for admins, any user's
ledger with a grant form and a plan form (CSRF-protected like every dashboard form)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from posegen import accounts, credits
from posegen.db.models import CreditKind
from posegen.exceptions import InvalidInput, NotFound, PosegenError
from posegen.web.context import (
    PREFIX,
    Admin,
    Ctx,
    PageRoute,
    SignedIn,
    WebContext,
    check_csrf,
    form_str,
    render,
)

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE = 25
MAX_ID = 2**63 - 1
_FORM = {"max_files": 0, "max_fields": 20, "max_part_size": 4096}


def _before(value: str | None) -> int | None:
    if value in (None, ""):
        return None
    try:
        found = int(value)
    except ValueError as exc:
        raise InvalidInput("before must be a ledger row id") from exc
    if found < 1:
        raise InvalidInput("before must be a ledger row id")
    return found


def ledger_values(ctx: WebContext, user_id: int, before: int | None) -> dict[str, Any]:
    """Balance, plan and one page of the ledger (newest first; the next page starts before
    the last row shown)."""
    rows = credits.ledger_page(ctx.engine, user_id, before_id=before, limit=PAGE + 1)
    standing = credits.plans.standing(ctx.engine, ctx.settings, user_id)
    return {
        "balance": credits.balance(ctx.engine, user_id),
        "plan": standing.plan,
        "quota_left": standing.left_today,
        "entries": rows[:PAGE],
        "next_before": rows[PAGE - 1].id if len(rows) > PAGE else None,
        "first_page": before is None,
        "timezone": ctx.settings.quota_timezone,
    }


@router.get("/credits", name="web-credits")
async def my_credits(
    request: Request, ctx: Ctx, session: SignedIn, before: str | None = None
) -> Response:
    """The signed-in user's balance, plan and ledger."""
    assert session.account is not None
    values = await run_in_threadpool(ledger_values, ctx, session.account.id, _before(before))
    return render(request, "credits.html", values, session=session)


@router.get("/admin/credits", name="web-admin-credits")
async def find_user(
    request: Request, ctx: Ctx, session: Admin, email: str | None = None
) -> Response:
    """Find a user by e-mail, then open their credits page."""
    if email:
        try:
            account = await run_in_threadpool(accounts.get_by_email, ctx.engine, email)
        except PosegenError as exc:
            if exc.http_status >= 500:
                raise
            values = {"email": email, "error": exc.message}
            return render(request, "admin_credits.html", values, status=404, session=session)
        return RedirectResponse(f"{PREFIX}/admin/users/{account.id}/credits", status_code=303)
    return render(request, "admin_credits.html", {"email": "", "error": None}, session=session)


def _user_values(
    ctx: WebContext, user_id: int, before: int | None, notice: str | None, error: str | None
) -> dict[str, Any]:
    if not 1 <= user_id <= MAX_ID:
        raise NotFound(f"no user {user_id}")
    account = accounts.get_by_id(ctx.engine, user_id)
    return {
        **ledger_values(ctx, user_id, before),
        "account": account,
        "notice": notice,
        "error": error,
        "today": credits.plans.local_day(ctx.settings).isoformat(),
    }


@router.get("/admin/users/{user_id}/credits", name="web-admin-user-credits")
async def user_credits(
    request: Request,
    ctx: Ctx,
    session: Admin,
    user_id: int,
    before: str | None = None,
    notice: str | None = None,
) -> Response:
    """One user's balance, plan and ledger, with the grant and plan forms."""
    values = await run_in_threadpool(_user_values, ctx, user_id, _before(before), notice, None)
    return render(request, "admin_user_credits.html", values, session=session)


def _grant(ctx: WebContext, admin_id: int, user_id: int, form: dict[str, Any]) -> int:
    raw = (form_str(form, "amount") or "").strip()
    try:
        amount = int(raw)
    except ValueError as exc:
        raise InvalidInput("the amount must be a whole number of credits") from exc
    kind = CreditKind.ADJUSTMENT if form_str(form, "kind") == "adjustment" else CreditKind.GRANT
    reason = (form_str(form, "reason") or "").strip() or None
    balance, _ = credits.grant(
        ctx.engine, user_id, amount, kind=kind, actor_id=admin_id, reason=reason
    )
    return balance


def _set_plan(ctx: WebContext, admin_id: int, user_id: int, form: dict[str, Any]) -> None:
    reason = (form_str(form, "reason") or "").strip() or None
    if form_str(form, "plan") == "payg":
        credits.plans.set_plan(
            ctx.engine,
            user_id,
            daily_poses=None,
            valid_until=None,
            actor_id=admin_id,
            reason=reason,
        )
        return
    try:
        daily = int((form_str(form, "quota") or "").strip())
        until = dt.date.fromisoformat((form_str(form, "until") or "").strip())
    except ValueError as exc:
        raise InvalidInput("a quota plan needs a whole number of poses and a date") from exc
    credits.plans.set_plan(
        ctx.engine, user_id, daily_poses=daily, valid_until=until, actor_id=admin_id, reason=reason
    )


async def _change(
    request: Request, ctx: WebContext, session: Any, user_id: int, what: str
) -> Response:
    form = dict(await request.form(**_FORM))
    check_csrf(ctx, session, form)
    if not 1 <= user_id <= MAX_ID:
        raise NotFound(f"no user {user_id}")
    assert session.account is not None
    action = _grant if what == "grant" else _set_plan
    try:
        await run_in_threadpool(action, ctx, session.account.id, user_id, form)
    except PosegenError as exc:
        if exc.http_status >= 500 or exc.http_status == 404:
            raise
        values = await run_in_threadpool(_user_values, ctx, user_id, None, None, exc.message)
        return render(
            request, "admin_user_credits.html", values, status=exc.http_status, session=session
        )
    return RedirectResponse(
        f"{PREFIX}/admin/users/{user_id}/credits?notice={what}", status_code=303
    )


@router.post("/admin/users/{user_id}/credits", name="web-admin-grant")
async def grant(request: Request, ctx: Ctx, session: Admin, user_id: int) -> Response:
    """Grant (or adjust) credits, ledgered with this admin's id and the reason."""
    return await _change(request, ctx, session, user_id, "grant")


@router.post("/admin/users/{user_id}/plan", name="web-admin-plan")
async def plan(request: Request, ctx: Ctx, session: Admin, user_id: int) -> Response:
    """Put the user on a quota plan or back on pay as you go."""
    return await _change(request, ctx, session, user_id, "plan")
