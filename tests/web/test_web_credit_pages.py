"""Credits on the dashboard (both engines): in headless Chromium an admin grants credits with
the CSRF-protected form and the user then sees the balance and plan in the header, the ledger
page and the live cost on the new-generation form; over plain HTTP the ledger pages by keyset,
a grant without the CSRF token is refused, a quota plan set from the form shows in the header
(and, with a quota generation's poses, on the ledger page), and with every price at 0 a user
who never had credits sees nothing about them."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from browser_harness import ConsoleErrors, chromium, live_server, require_chromium
from fastapi.testclient import TestClient
from sqlalchemy import Engine, insert, select
from web_helpers import People, csrf_of, signed_in_client

from posegen import credits, queue
from posegen.api.app import create_app
from posegen.config import Settings
from posegen.db.models import CreditLedger, GenerationType, Project
from posegen.queue import GenerationRequest

PRICE = 3


def _sign_in(page: Any, base: str, key: str) -> None:
    page.goto(f"{base}/ui/sign-in")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/sign-in" not in url)


@pytest.mark.browser
def test_grant_in_the_browser_then_the_balance_in_the_header(
    settings: Settings, engine: Engine, people: People
) -> None:
    require_chromium()
    priced = settings.model_copy(update={"credits_per_pose": PRICE})
    user = people.user.account
    with live_server(create_app(priced, engine)) as base, chromium() as browser:
        admin_page = browser.new_page()
        errors = ConsoleErrors(admin_page)
        _sign_in(admin_page, base, people.admin.api_key)
        admin_page.get_by_role("link", name="Credits admin").click()
        admin_page.get_by_label("User's e-mail").fill(user.email)
        admin_page.get_by_role("button", name="Open").click()
        admin_page.wait_for_url(f"**/ui/admin/users/{user.id}/credits")
        admin_page.get_by_label("Amount").fill("40")
        admin_page.get_by_label("Reason (kept in the ledger)").fill("welcome")
        admin_page.get_by_role("button", name="Apply").click()
        admin_page.wait_for_url("**notice=grant")
        assert admin_page.locator("#user-balance").inner_text() == "40"
        assert "welcome" in admin_page.locator("#ledger").inner_text()

        user_page = browser.new_page()
        errors_user = ConsoleErrors(user_page)
        _sign_in(user_page, base, people.user.api_key)
        header = user_page.locator("#credit-status")
        assert header.locator("#credit-balance").inner_text() == "40 credits"
        assert header.locator("#credit-plan").inner_text() == "Pay as you go"
        header.click()
        user_page.wait_for_url("**/ui/credits")
        row = user_page.locator("#ledger tbody tr").first.inner_text()
        assert "grant" in row and "+40" in row and f"by user {people.admin.account.id}" in row

        # The live total on the form: ticking poses and changing variations moves it.
        user_page.goto(f"{base}/ui/generations/new")
        total = user_page.locator("#cost-total")
        assert total.inner_text() == "0"
        boxes = user_page.locator("input[name='pose_id']")
        boxes.nth(0).check()
        boxes.nth(1).check()
        user_page.locator("#variations").fill("3")
        assert total.inner_text() == str(2 * 3 * PRICE)
        user_page.get_by_label("A pose described in text").check()
        assert total.inner_text() == str(1 * 3 * PRICE)
        assert errors.errors == [] and errors_user.errors == []


def test_ledger_pages_csrf_plans_and_silence_when_free(
    settings: Settings, engine: Engine, people: People
) -> None:
    user, admin = people.user.account, people.admin.account
    with TestClient(create_app(settings, engine), base_url="http://testserver") as c:
        signed_in_client(c, people.user.api_key)
        page = c.get("/ui/generations")
        assert page.status_code == 200 and "credit-status" not in page.text  # free: silent

    for i in range(30):
        credits.grant(engine, user.id, i + 1, reason=f"r{i}")
    with TestClient(create_app(settings, engine), base_url="http://testserver") as c:
        signed_in_client(c, people.user.api_key)
        first = c.get("/ui/credits")
        assert 'id="credit-balance">465 credits' in first.text  # a balance shows even when free
        amounts = re.findall(r'class="num amount-in">\+(\d+)<', first.text)
        older = re.search(r'href="/ui/credits\?before=(\d+)" id="ledger-older"', first.text)
        assert older and len(amounts) == 25
        second = c.get(f"/ui/credits?before={older.group(1)}")
        rest = re.findall(r'class="num amount-in">\+(\d+)<', second.text)
        assert sorted(int(a) for a in amounts + rest) == list(range(1, 31))
        assert 'id="ledger-older"' not in second.text
        assert c.get(f"/ui/admin/users/{user.id}/credits").status_code == 403

    with TestClient(create_app(settings, engine), base_url="http://testserver") as c:
        signed_in_client(c, people.admin.api_key)
        url = f"/ui/admin/users/{user.id}"
        no_token = c.post(f"{url}/credits", data={"amount": "5"}, follow_redirects=False)
        assert no_token.status_code == 403
        csrf = csrf_of(c.get(f"{url}/credits").text)
        bad = c.post(f"{url}/credits", data={"csrf_token": csrf, "amount": "x"})
        assert bad.status_code == 422 and "whole number" in bad.text
        overdraw = c.post(
            f"{url}/credits", data={"csrf_token": csrf, "amount": "-1000", "kind": "adjustment"}
        )
        assert overdraw.status_code == 402
        until = (dt.date.today() + dt.timedelta(days=30)).isoformat()
        made = c.post(
            f"{url}/plan",
            data={"csrf_token": csrf, "plan": "quota", "quota": "12", "until": until},
            follow_redirects=False,
        )
        assert made.status_code == 303
        assert "12 poses a day" in c.get(f"{url}/credits").text
        assert c.get("/ui/admin/users/999999/credits").status_code == 404
    with TestClient(create_app(settings, engine), base_url="http://testserver") as c:
        signed_in_client(c, people.user.api_key)
        header = c.get("/ui/generations").text
        assert 'id="credit-plan">Quota: 12/12 poses left today' in header
        assert "12 of 12 poses left today" in c.get("/ui/generations/new").text
        # The plan change and a quota generation's poses are on the user's ledger page.
        with engine.begin() as conn:
            project = conn.execute(
                insert(Project).values(user_id=user.id, name="q").returning(Project.id)
            ).scalar_one()
        text_req = GenerationRequest(user.id, project, GenerationType.TEXT, [], 1, prompt="x")
        queue.submit(engine, settings, text_req)
        page = c.get("/ui/credits").text
        assert "plan change" in page
        assert f"-1 pose (quota, {credits.plans.local_day(settings).isoformat()})" in page
    with engine.connect() as conn:
        rows = conn.execute(select(CreditLedger.kind, CreditLedger.actor_id)).all()
    # The refused changes wrote nothing; the grants were the system's; the plan the admin's.
    assert {a for k, a in rows if k != "plan"} == {None}
    assert [a for k, a in rows if k == "plan"] == [admin.id]
    assert credits.check(engine) == []
