"""Credits over real HTTP on both engines: 50 simultaneous submits against a balance that covers
3 leave exactly 3 generations and 3 usage rows (every other answer a 402 with `required` and
`balance`); replays of one Idempotency-Key are charged once; the balance, the ledger pages and
an admin's grant read and write what the ledger says."""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx
from api_helpers import Keys, problem_of
from live_server import live_server
from pydantic import SecretStr
from sqlalchemy import Engine, func, select
from test_api_limits_race import _auth, _fire, _limited, _project, _rows

from posegen import credits
from posegen.api.app import create_app
from posegen.config import Settings
from posegen.credits import webhook
from posegen.db.models import CreditKind, CreditLedger

N = 50
PRICE = 10


def _usage_rows(engine: Engine, user_id: int) -> int:
    L = CreditLedger
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count(L.id)).where(L.user_id == user_id, L.kind == CreditKind.USAGE)
            ).scalar_one()
        )


def _priced(settings: Settings) -> Settings:
    return _limited(
        settings,
        credits_per_pose=PRICE,
        max_active_generations=1000,
        submissions_per_minute=1000,
    )


def test_fifty_simultaneous_submits_against_three_generations_of_credit(
    settings: Settings, engine: Engine, keys: Keys
) -> None:
    s = _priced(settings)
    credits.grant(engine, keys.user_id, 3 * PRICE + PRICE // 2, reason="test")
    with live_server(create_app(s, engine), s) as (base, _), httpx.Client() as c:
        project = _project(c, base, keys.user)
        body = {"projectId": project, "textPrompt": "a dancer", "variations": 1}
        responses = _fire(base, keys.user, [body] * N, [{}] * N)
        statuses = Counter(r.status_code for r in responses)
        assert statuses == {202: 3, 402: N - 3}, statuses
        for r in responses:
            if r.status_code == 402:
                p = problem_of(r, 402)
                assert p["type"].endswith("/insufficient-credits")
                assert p["required"] == PRICE and 0 <= p["balance"] < PRICE
            else:
                assert r.json()["creditCharged"] == PRICE
                assert r.json()["creditRefunded"] == 0
        assert _rows(engine, keys.user_id) == 3
        assert _usage_rows(engine, keys.user_id) == 3
        mine = c.get(f"{base}/credits", headers=_auth(keys.user)).json()
        assert mine == {"balance": PRICE // 2, "plan": "payg", "quotaLeftToday": None}
        assert credits.check(engine) == []


def test_replays_of_one_key_are_charged_once(
    settings: Settings, engine: Engine, keys: Keys
) -> None:
    s = _priced(settings)
    credits.grant(engine, keys.user_id, 5 * PRICE)
    with live_server(create_app(s, engine), s) as (base, _), httpx.Client() as c:
        project = _project(c, base, keys.user)
        body = {"projectId": project, "textPrompt": "a dancer"}
        responses = _fire(base, keys.user, [body] * 40, [{"Idempotency-Key": "pay-once"}] * 40)
        assert Counter(r.status_code for r in responses) == {202: 1, 200: 39}
        assert len({r.json()["id"] for r in responses}) == 1
        assert _usage_rows(engine, keys.user_id) == 1
        assert credits.balance(engine, keys.user_id) == 4 * PRICE


def test_ledger_pages_and_admin_grants(settings: Settings, engine: Engine, keys: Keys) -> None:
    with live_server(create_app(settings, engine), settings) as (base, _), httpx.Client() as c:
        url = f"{base}/admin/users/{keys.user_id}/credits"
        for i in range(5):
            r = c.post(url, json={"amount": i + 1, "reason": f"r{i}"}, headers=_auth(keys.admin))
            assert r.status_code == 200 and r.json()["applied"], r.text
        assert r.json()["balance"] == 15
        # An Idempotency-Key makes a retried grant a no-op.
        once = _auth(keys.admin, **{"Idempotency-Key": "shop-order-9"})
        first = c.post(url, json={"amount": 100, "kind": "purchase"}, headers=once)
        second = c.post(url, json={"amount": 100, "kind": "purchase"}, headers=once)
        assert first.json() == {"userId": keys.user_id, "balance": 115, "applied": True}
        assert second.json() == {"userId": keys.user_id, "balance": 115, "applied": False}
        # Taking away: only as an adjustment, never below zero.
        r = c.post(url, json={"amount": -5, "reason": "x"}, headers=_auth(keys.admin))
        assert problem_of(r, 422)["kind"] == "invalid-input"
        r = c.post(url, json={"amount": -500, "kind": "adjustment"}, headers=_auth(keys.admin))
        p = problem_of(r, 402)
        assert (p["required"], p["balance"]) == (500, 115)
        r = c.post(
            f"{base}/admin/users/999999/credits", json={"amount": 1}, headers=_auth(keys.admin)
        )
        assert problem_of(r, 404)

        pages: list[dict] = []
        cursor = None
        while True:
            params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            got = c.get(f"{base}/credits/ledger", params=params, headers=_auth(keys.user)).json()
            pages.extend(got["items"])
            cursor = got["nextCursor"]
            if cursor is None:
                break
        assert [e["amount"] for e in pages] == [100, 5, 4, 3, 2, 1]
        assert {e["actorId"] for e in pages} == {keys.admin_id}
        assert pages[-1]["reason"] == "r0" and pages[0]["kind"] == "purchase"
        # Admins read anyone's ledger; a user only their own.
        theirs = c.get(
            f"{base}/credits/ledger", params={"userId": keys.user_id}, headers=_auth(keys.admin)
        ).json()
        assert [e["amount"] for e in theirs["items"]] == [100, 5, 4, 3, 2, 1]
        peek = c.get(
            f"{base}/credits/ledger", params={"userId": keys.user_id}, headers=_auth(keys.other)
        )
        assert problem_of(peek, 403)
        # Another user's ledger is their own (empty).
        other = c.get(f"{base}/credits/ledger", headers=_auth(keys.other)).json()
        assert other == {"items": [], "nextCursor": None}
        bad = c.get(f"{base}/credits/ledger", params={"cursor": "!!"}, headers=_auth(keys.user))
        assert problem_of(bad, 422)["kind"] == "bad-cursor"


def test_signed_payment_webhook_credits_once_per_event(
    settings: Settings, engine: Engine, keys: Keys
) -> None:
    secret = "whsec-test"
    s = settings.model_copy(update={"payment_webhook_secret": SecretStr(secret)})
    with live_server(create_app(s, engine), s) as (base, _), httpx.Client() as c:
        url = f"{base}/webhooks/payments"

        def send(event: dict, signature: str | None = "sign") -> httpx.Response:
            body = json.dumps({"timestamp": int(time.time())} | event).encode()
            headers = {"Content-Type": "application/json"}
            if signature == "sign":
                headers[webhook.HEADER] = webhook.sign(secret, body)
            elif signature is not None:
                headers[webhook.HEADER] = signature
            return c.post(url, content=body, headers=headers)

        paid = {"eventId": "evt_1", "userId": keys.user_id, "credits": 250, "paymentRef": "ch_9"}
        first = send(paid)
        assert first.status_code == 200, first.text
        assert first.json() == {"userId": keys.user_id, "balance": 250, "applied": True}
        # The provider redelivers: nothing more.
        assert send(paid).json() == {"userId": keys.user_id, "balance": 250, "applied": False}
        by_email = send({"eventId": "evt_2", "email": "olaf@example.com", "credits": 5})
        assert by_email.json() == {"userId": keys.other_id, "balance": 5, "applied": True}
        # Wrong or missing signatures, a body changed after signing: 401, nothing credited.
        assert problem_of(send(paid | {"eventId": "evt_3"}, None), 401)["kind"] == "bad-signature"
        assert problem_of(send(paid, "sha256=" + "0" * 64), 401)["kind"] == "bad-signature"
        body = json.dumps(paid | {"eventId": "evt_4", "timestamp": int(time.time())}).encode()
        tampered = body.replace(b"250", b"999")
        r = c.post(url, content=tampered, headers={webhook.HEADER: webhook.sign(secret, body)})
        assert problem_of(r, 401)["kind"] == "bad-signature"
        # Correctly signed but stale (a captured request replayed later, even under a new
        # event id), or without a timestamp: refused, nothing credited.
        tolerance = s.payment_webhook_tolerance_seconds
        old = send(paid | {"eventId": "evt_7", "timestamp": int(time.time()) - tolerance - 60})
        assert problem_of(old, 401)["kind"] == "stale-event"
        ahead = send(paid | {"eventId": "evt_8", "timestamp": int(time.time()) + tolerance + 60})
        assert problem_of(ahead, 401)["kind"] == "stale-event"
        assert problem_of(send(paid | {"eventId": "evt_9", "timestamp": None}), 422)
        # Signed but malformed, or for nobody.
        assert problem_of(send({"eventId": "evt_5", "userId": keys.user_id}), 422)
        assert problem_of(send({"eventId": "evt_6", "userId": 999999, "credits": 1}), 404)
        assert credits.balance(engine, keys.user_id) == 250
        ledger = credits.ledger_page(engine, keys.user_id)
        assert ledger[-1].kind == "purchase" and ledger[-1].payment_ref == "ch_9"
        assert credits.check(engine) == []


def test_personal_stats(settings: Settings, engine: Engine, keys: Keys, library: None) -> None:
    from api_helpers import claim_one, write_pose

    from posegen import queue

    s = settings.model_copy(update={"credits_per_pose": 4})
    credits.grant(engine, keys.user_id, 100)
    with live_server(create_app(s, engine), s) as (base, _), httpx.Client() as c:
        project = _project(c, base, keys.user)
        body = {"projectId": project, "poseIds": [1, 2]}
        r = c.post(f"{base}/generations", json=body, headers=_auth(keys.user))
        assert r.status_code == 202, r.text
        job = claim_one(engine, s)
        write_pose(engine, s, job, 1, 0)
        queue.finish(engine, job.id, job.lease_token)  # pose 2 never ran: partial, 4 back
        got = c.get(f"{base}/stats", headers=_auth(keys.user)).json()
        assert got["totalPosesGenerated"] == 1
        assert got["totalProjects"] == 1 and got["recentGenerations"] == 1
        assert got["creditUsage"] == {"totalSpent": 4, "last30Days": 4, "averagePerGeneration": 4.0}
        (top,) = got["topUsedPoses"]
        assert (top["poseId"], top["usageCount"]) == (1, 1) and top["poseName"]
        empty = c.get(f"{base}/stats", headers=_auth(keys.other)).json()
        assert empty["creditUsage"]["averagePerGeneration"] is None
        assert empty["topUsedPoses"] == [] and empty["totalPosesGenerated"] == 0
