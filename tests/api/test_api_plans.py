"""Quota plans over real HTTP on both engines: an admin puts a user on a quota of 7 poses a day
(ledgered with the admin's id); 50 simultaneous one-pose submits leave exactly 7 generations,
charged no credits, and 43 answers 429 `quota-exceeded` that say when the quota resets; the
balance endpoint reads the plan and what is left today; back on payg the price applies again.
Exactly 7 pose rows land on the ledger (one per accepted generation, on the local day) and
each plan change is a ledger row with the admin's id."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import httpx
from api_helpers import Keys, problem_of
from live_server import live_server
from sqlalchemy import Engine, select
from test_api_limits_race import _auth, _fire, _limited, _project, _rows

from posegen import credits
from posegen.api.app import create_app
from posegen.config import Settings
from posegen.db.models import CreditKind, CreditLedger, CreditPlan, LedgerUnit, PlanKind

N = 50
QUOTA = 7
PRICE = 10


def test_fifty_simultaneous_submits_against_a_quota_of_seven(
    settings: Settings, engine: Engine, keys: Keys
) -> None:
    s = _limited(
        settings,
        credits_per_pose=PRICE,
        max_active_generations=1000,
        submissions_per_minute=1000,
        quota_timezone="America/New_York",
    )
    until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).date()
    with live_server(create_app(s, engine), s) as (base, _), httpx.Client() as c:
        url = f"{base}/admin/users/{keys.user_id}/plan"
        refused = c.post(url, json={"plan": "quota", "quota": QUOTA}, headers=_auth(keys.admin))
        assert problem_of(refused, 422)["type"].endswith("/invalid-input")
        assert c.post(url, json={"plan": "payg"}, headers=_auth(keys.user)).status_code == 403
        set_it = c.post(
            url,
            json={"plan": "quota", "quota": QUOTA, "until": until.isoformat(), "reason": "pro"},
            headers=_auth(keys.admin),
        )
        assert set_it.status_code == 200, set_it.text
        assert set_it.json() == {
            "userId": keys.user_id,
            "plan": "quota",
            "quota": QUOTA,
            "until": until.isoformat(),
        }
        mine = c.get(f"{base}/credits", headers=_auth(keys.user)).json()
        assert mine == {"balance": 0, "plan": "quota", "quotaLeftToday": QUOTA}

        project = _project(c, base, keys.user)
        body = {"projectId": project, "textPrompt": "a dancer", "variations": 1}
        responses = _fire(base, keys.user, [body] * N, [{}] * N)
        assert Counter(r.status_code for r in responses) == {202: QUOTA, 429: N - QUOTA}
        resets = set()
        for r in responses:
            if r.status_code == 429:
                p = problem_of(r, 429)
                assert p["type"].endswith("/quota-exceeded")
                assert (p["quotaPerDay"], p["quotaLeftToday"]) == (QUOTA, 0)
                reset = dt.datetime.fromisoformat(p["resetsAt"])
                # Local midnight in the plan's zone, within a day, and Retry-After agrees.
                local = reset.astimezone(dt.timezone(reset.utcoffset() or dt.timedelta()))
                assert (local.hour, local.minute, local.second) == (0, 0, 0)
                wait = (reset - dt.datetime.now(dt.UTC)).total_seconds()
                assert 0 < wait <= 24 * 3600 + 3600
                assert abs(int(r.headers["Retry-After"]) - wait) < 120
                resets.add(p["resetsAt"])
            else:
                assert r.json()["creditCharged"] == 0
        assert len(resets) == 1
        ledger = c.get(f"{base}/credits/ledger?limit=100", headers=_auth(keys.user)).json()
        poses = [e for e in ledger["items"] if e["unit"] == "poses"]
        assert len(poses) == QUOTA
        assert {(e["kind"], e["amount"], e["quotaDay"]) for e in poses} == {
            ("usage", -1, credits.plans.local_day(s).isoformat())
        }
        (plan_entry,) = [e for e in ledger["items"] if e["kind"] == "plan"]
        assert (plan_entry["amount"], plan_entry["actorId"]) == (0, keys.admin_id)
        assert plan_entry["planId"] is not None and plan_entry["unit"] == "credits"
        assert _rows(engine, keys.user_id) == QUOTA
        mine = c.get(f"{base}/credits", headers=_auth(keys.user)).json()
        assert mine == {"balance": 0, "plan": "quota", "quotaLeftToday": 0}

        # Back on pay as you go: the price applies, and a balance of 0 refuses with a 402.
        back = c.post(url, json={"plan": "payg"}, headers=_auth(keys.admin))
        assert back.status_code == 200 and back.json()["plan"] == "payg"
        refused = c.post(f"{base}/generations", json=body, headers=_auth(keys.user))
        assert problem_of(refused, 402)["required"] == PRICE
        assert c.get(f"{base}/credits", headers=_auth(keys.user)).json()["quotaLeftToday"] is None

    with engine.connect() as conn:
        plans = conn.execute(
            select(CreditPlan.plan, CreditPlan.actor_id, CreditPlan.reason)
            .where(CreditPlan.user_id == keys.user_id)
            .order_by(CreditPlan.id)
        ).all()
        assert [(PlanKind(p), a, r) for p, a, r in plans] == [
            (PlanKind.QUOTA, keys.admin_id, "pro"),
            (PlanKind.PAYG, keys.admin_id, None),
        ]
        plan_ids = (
            conn.execute(
                select(CreditPlan.id)
                .where(CreditPlan.user_id == keys.user_id)
                .order_by(CreditPlan.id)
            )
            .scalars()
            .all()
        )
        L = CreditLedger
        rows = conn.execute(
            select(L.kind, L.unit, L.amount, L.quota_day, L.plan_id, L.actor_id, L.generation_id)
            .where(L.user_id == keys.user_id)
            .order_by(L.id)
        ).all()
    # Each plan change is on the ledger with the admin's id (amount 0: no credits move), and
    # exactly one pose row per accepted generation, on today's local day; no credits charged.
    plan_rows = [r for r in rows if CreditKind(r.kind) is CreditKind.PLAN]
    assert [(r.amount, r.plan_id, r.actor_id) for r in plan_rows] == [
        (0, plan_ids[0], keys.admin_id),
        (0, plan_ids[1], keys.admin_id),
    ]
    uses = [r for r in rows if LedgerUnit(r.unit) is LedgerUnit.POSES]
    assert len(uses) == QUOTA and len(rows) == QUOTA + 2
    assert {(CreditKind(r.kind), r.amount) for r in uses} == {(CreditKind.USAGE, -1)}
    assert len({r.generation_id for r in uses}) == QUOTA
    assert {r.quota_day for r in uses} == {credits.plans.local_day(s)}
    assert credits.check(engine) == [] and credits.quota_ledger.check(engine) == []
