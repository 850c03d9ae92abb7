"""Premium library poses over real HTTP on both engines: a pay-as-you-go user (with credits to
spare) who submits one gets 403 `premium-pose` naming it, with nothing queued or charged; a user
on a live quota plan and an admin are accepted; once the quota plan has expired the user is
refused again, with the message saying so. Ordinary poses stay usable by everyone."""

from __future__ import annotations

import datetime as dt

import httpx
from api_helpers import Keys, problem_of
from live_server import live_server
from sqlalchemy import Engine, func, select
from test_api_limits_race import _auth, _limited, _project, _rows

from posegen import credits
from posegen.api.app import create_app
from posegen.config import Settings
from posegen.db.models import CreditLedger, PoseLibrary

PRICE = 10


def _premium_and_plain(engine: Engine) -> tuple[tuple[int, str], int]:
    with engine.connect() as conn:
        premium = conn.execute(
            select(PoseLibrary.id, PoseLibrary.name)
            .where(PoseLibrary.premium.is_(True), PoseLibrary.is_public.is_(True))
            .order_by(PoseLibrary.id)
        ).first()
        plain = conn.execute(
            select(func.min(PoseLibrary.id)).where(
                PoseLibrary.premium.is_(False), PoseLibrary.is_public.is_(True)
            )
        ).scalar_one()
    assert premium is not None and plain is not None  # the built-in library has both
    return (int(premium[0]), str(premium[1])), int(plain)


def _ledger_rows(engine: Engine, user_id: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count(CreditLedger.id)).where(CreditLedger.user_id == user_id)
            ).scalar_one()
        )


def test_premium_poses_need_a_live_quota_plan_or_an_admin(
    settings: Settings, engine: Engine, keys: Keys, library: None
) -> None:
    s = _limited(settings, credits_per_pose=PRICE, submissions_per_minute=1000)
    (premium_id, premium_name), plain_id = _premium_and_plain(engine)
    credits.grant(engine, keys.user_id, 100 * PRICE, reason="test")
    credits.grant(engine, keys.admin_id, 10 * PRICE, reason="test")
    with live_server(create_app(s, engine), s) as (base, _), httpx.Client(timeout=60) as c:
        listed = c.get(f"{base}/library/poses/{premium_id}", headers=_auth(keys.user))
        assert listed.status_code == 200 and listed.json()["premium"] is True  # browsable

        project = _project(c, base, keys.user)
        body = {"projectId": project, "poseIds": [plain_id, premium_id]}
        before = (_rows(engine, keys.user_id), _ledger_rows(engine, keys.user_id))
        refused = c.post(f"{base}/generations", json=body, headers=_auth(keys.user))
        p = problem_of(refused, 403)
        assert p["type"].endswith("/premium-pose")
        assert repr(premium_name) in p["detail"] and f"id {premium_id}" in p["detail"]
        assert "quota plan" in p["detail"] and "pay as you go" in p["detail"]
        assert f"id {plain_id})" not in p["detail"]
        assert (_rows(engine, keys.user_id), _ledger_rows(engine, keys.user_id)) == before
        assert credits.balance(engine, keys.user_id) == 100 * PRICE

        # The ordinary pose alone is fine (and charged) on pay as you go.
        plain = c.post(
            f"{base}/generations", json={**body, "poseIds": [plain_id]}, headers=_auth(keys.user)
        )
        assert plain.status_code == 202, plain.text
        assert plain.json()["creditCharged"] == PRICE

        # On a live quota plan the premium pose is included.
        until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).date()
        url = f"{base}/admin/users/{keys.user_id}/plan"
        plan = {"plan": "quota", "quota": 10, "until": until.isoformat()}
        assert c.post(url, json=plan, headers=_auth(keys.admin)).status_code == 200
        ok = c.post(f"{base}/generations", json=body, headers=_auth(keys.user))
        assert ok.status_code == 202, ok.text
        assert ok.json()["poseIds"] == [plain_id, premium_id]
        assert ok.json()["creditCharged"] == 0

        # An expired quota plan reads as pay as you go: refused again, saying when it ended.
        ended = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).date()
        credits.plans.set_plan(engine, keys.user_id, daily_poses=10, valid_until=ended)
        count = _rows(engine, keys.user_id)
        again = problem_of(c.post(f"{base}/generations", json=body, headers=_auth(keys.user)), 403)
        assert again["type"].endswith("/premium-pose")
        assert f"ended on {ended.isoformat()}" in again["detail"]
        assert _rows(engine, keys.user_id) == count

        # An admin (on pay as you go) may use premium poses.
        admin_project = _project(c, base, keys.admin)
        mine = c.post(
            f"{base}/generations",
            json={"projectId": admin_project, "poseIds": [premium_id]},
            headers=_auth(keys.admin),
        )
        assert mine.status_code == 202, mine.text
