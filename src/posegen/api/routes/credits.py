"""Credits: the caller's balance and ledger; operators' grants and adjustments; the payment
provider's signed webhook."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.concurrency import run_in_threadpool

from posegen import credits, pagination, personal_stats
from posegen.api.deps import AdminUser, CurrentUser, EngineDep, PathId, SettingsDep, is_admin
from posegen.api.openapi import problems
from posegen.api.schemas import (
    MAX_ID,
    CreditGrant,
    CreditGrantOut,
    CreditsOut,
    CreditUsageOut,
    LedgerEntryOut,
    Page,
    PlanIn,
    PlanOut,
    StatsOut,
    TopPoseOut,
)
from posegen.credits import webhook
from posegen.db.models import CreditKind
from posegen.exceptions import Forbidden, InvalidInput, NotFound

router = APIRouter(tags=["credits"])


@router.get("/credits", response_model=CreditsOut)
def my_credits(user: CurrentUser, engine: EngineDep, settings: SettingsDep) -> CreditsOut:
    """The caller's balance, plan and the poses left today on a quota plan."""
    standing = credits.plans.standing(engine, settings, user.id)
    return CreditsOut(
        balance=credits.balance(engine, user.id),
        plan="quota" if standing.plan.is_quota else "payg",
        quota_left_today=standing.left_today,
    )


@router.post("/admin/users/{user_id}/plan", response_model=PlanOut, responses=problems(404, 422))
def set_plan(user_id: PathId, body: PlanIn, admin: AdminUser, engine: EngineDep) -> PlanOut:
    """Put a user on a quota plan (`quota` poses a day through the local date `until`) or back
    on pay as you go; ledgered in `credit_plans` with the admin's id and the reason."""
    if body.plan == "payg" and (body.quota is not None or body.until is not None):
        raise InvalidInput("a payg plan takes no quota or until")
    if body.plan == "quota" and (body.quota is None or body.until is None):
        raise InvalidInput("a quota plan needs quota (poses per day) and until (a date)")
    plan = credits.plans.set_plan(
        engine,
        user_id,
        daily_poses=body.quota,
        valid_until=body.until,
        actor_id=admin.id,
        reason=body.reason,
    )
    return PlanOut(
        user_id=user_id, plan=plan.kind.value, quota=plan.daily_poses, until=plan.valid_until
    )


@router.get("/credits/ledger", response_model=Page[LedgerEntryOut], responses=problems(403, 422))
def my_ledger(
    user: CurrentUser,
    engine: EngineDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    user_id: Annotated[int | None, Query(alias="userId", ge=1, le=MAX_ID)] = None,
) -> Page[LedgerEntryOut]:
    """The caller's ledger, newest first, in keyset pages; admins may name a `userId`."""
    if user_id is not None and user_id != user.id and not is_admin(user):
        raise Forbidden("only admins may read other users' ledgers")
    owner = user.id if user_id is None else user_id
    before = None if cursor is None else int(pagination.decode(cursor, int)[0])
    rows = credits.ledger_page(engine, owner, before_id=before, limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[LedgerEntryOut](
        items=[LedgerEntryOut.model_validate(r, from_attributes=True) for r in rows],
        next_cursor=pagination.encode(rows[-1].id) if more and rows else None,
    )


@router.post(
    "/admin/users/{user_id}/credits",
    response_model=CreditGrantOut,
    responses=problems(402, 404, 422),
)
def grant_credits(
    user_id: PathId,
    body: CreditGrant,
    admin: AdminUser,
    engine: EngineDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=150)
    ] = None,
) -> CreditGrantOut:
    """Grant, adjust (a negative amount needs kind `adjustment`) or record a purchase; ledgered
    with the admin's id and the reason. A repeated Idempotency-Key changes nothing."""
    balance, applied = credits.grant(
        engine,
        user_id,
        body.amount,
        kind=CreditKind(body.kind),
        actor_id=admin.id,
        reason=body.reason,
        key=idempotency_key,
        payment_ref=body.payment_ref,
    )
    return CreditGrantOut(user_id=user_id, balance=balance, applied=applied)


@router.post(
    "/webhooks/payments",
    response_model=CreditGrantOut,
    responses=problems(401, 404, 422),
)
async def payment_webhook(
    request: Request, engine: EngineDep, settings: SettingsDep
) -> CreditGrantOut:
    """A payment provider's signed event (no API key: `Posegen-Signature: sha256=<hex HMAC of
    the body>` with `POSEGEN_PAYMENT_WEBHOOK_SECRET`); each `eventId` credits once, and an
    event whose signed `timestamp` is older than the tolerance is refused (401 `stale-event`)."""
    if settings.payment_webhook_secret is None:
        raise NotFound("the payment webhook is not configured")
    body = await request.body()
    outcome = await run_in_threadpool(
        webhook.apply,
        engine,
        settings.payment_webhook_secret.get_secret_value(),
        body,
        request.headers.get(webhook.HEADER),
        tolerance_seconds=settings.payment_webhook_tolerance_seconds,
    )
    return CreditGrantOut(user_id=outcome.user_id, balance=outcome.balance, applied=outcome.applied)


@router.get("/stats", response_model=StatsOut)
def my_stats(user: CurrentUser, engine: EngineDep) -> StatsOut:
    """The caller's own figures: poses, projects, recent generations, credits, top poses."""
    s = personal_stats.for_user(engine, user.id)
    return StatsOut(
        total_poses_generated=s.total_poses_generated,
        total_projects=s.total_projects,
        recent_generations=s.recent_generations,
        credit_usage=CreditUsageOut(
            total_spent=s.credits_spent,
            last_30_days=s.credits_spent_30_days,
            average_per_generation=s.average_per_generation,
        ),
        top_used_poses=[
            TopPoseOut.model_validate(p, from_attributes=True) for p in s.top_used_poses
        ],
    )
