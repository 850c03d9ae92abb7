"""The library browser: filters, a favourite toggled and a rating given in headless Chromium
(both engines), and the mark forms' CSRF and redirect rules."""

from __future__ import annotations

from typing import Any

import pytest
from browser_harness import ConsoleErrors, chromium, live_server, require_chromium
from fastapi import FastAPI
from fastapi.testclient import TestClient
from web_helpers import People, csrf_of, signed_in_client


def _sign_in(page: Any, base: str, key: str) -> None:
    page.goto(f"{base}/ui/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/sign-in" not in url)


@pytest.mark.browser
def test_filter_favourite_and_rate_in_chromium(app: FastAPI, people: People) -> None:
    require_chromium()
    with live_server(app) as base, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        console = ConsoleErrors(page)
        _sign_in(page, base, people.user.api_key)
        page.goto(f"{base}/ui/library")
        page.get_by_label("Category").select_option("sitting")
        page.get_by_label("Sort").select_option("name")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(lambda url: "category=sitting" in url)
        cards = page.locator("#library li.pose")
        names = cards.locator(".name").all_inner_texts()
        assert names and names == sorted(names)
        assert all(t.startswith("sitting") for t in cards.locator(".tags").all_inner_texts()[::2])

        first = cards.first
        name = first.locator(".name").inner_text().strip()
        first.get_by_role("button", name=f"Add to favourites: {name}").click()
        page.wait_for_load_state()
        assert "category=sitting" in page.url  # back on the same view
        card = page.locator("#library li.pose").first
        toggle = card.get_by_role("button", name=f"Remove from favourites: {name}")
        assert toggle.get_attribute("aria-pressed") == "true"
        assert card.locator(".favorite-count").inner_text() == "1 favourite"
        card.get_by_label("Your rating").select_option("4")
        card.get_by_role("button", name=f"Rate {name}").click()
        page.wait_for_load_state()
        assert "4.0 ★ (1)" in page.locator("#library li.pose").first.inner_text()

        page.get_by_label("Category").select_option("")
        page.get_by_label("My favourites only").check()
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(lambda url: "favorites=1" in url)
        assert page.locator("#library li.pose .name").all_inner_texts() == [name]
        assert console.errors == []


def test_mark_forms_need_the_csrf_token_and_return_only_to_the_library(
    client: TestClient, people: People
) -> None:
    signed_in_client(client, people.user.api_key)
    page = client.get("/ui/library")
    token = csrf_of(page.text)
    refused = client.post("/ui/library/poses/1/favorite", data={"on": "1"})
    assert refused.status_code == 403
    r = client.post(
        "/ui/library/poses/1/favorite",
        data={"csrf_token": token, "on": "1", "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/library"
    r = client.post(
        "/ui/library/poses/1/rating",
        data={"csrf_token": token, "stars": "9", "next": "/ui/library"},
        follow_redirects=False,
    )
    assert r.status_code == 422
    mine = client.get("/ui/library?favorites=1")
    assert mine.text.count('class="pose"') == 1 and 'aria-pressed="true"' in mine.text
