"""End to end in headless Chromium: the real service on 127.0.0.1, a real worker (posemap backend),
sign-in, the form, a live progress bar, the gallery, the ZIP, phone width, CSRF and isolation."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest
from browser_harness import (
    OUTPUT,
    ConsoleErrors,
    chromium,
    images_loaded,
    live_server,
    no_horizontal_overflow,
    require_chromium,
)
from fastapi import FastAPI
from playwright.sync_api import Error as PlaywrightError
from sqlalchemy import Engine
from web_helpers import People, png_bytes, worker_thread

from posegen import generations_read
from posegen.config import Settings
from posegen.db.models import GenerationStatus

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def _sign_in(page: Any, base: str, key: str) -> None:
    page.goto(f"{base}/ui/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/sign-in" not in url)


def _shot(page: Any, folder: Path, name: str) -> None:
    """Save a screenshot for people to look at (no assertion rides on it). Chromium sometimes
    refuses a full-page capture under load ("Unable to capture screenshot", once in a suite run
    at load 10); one more try after a frame, then the error."""
    path = str(folder / f"{name}.png")
    try:
        page.screenshot(path=path, full_page=True)
    except PlaywrightError as exc:
        if "Unable to capture screenshot" not in str(exc):
            raise
        page.wait_for_timeout(200)
        page.screenshot(path=path, full_page=True)


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    # Autouse: runs before the database and app fixtures, so a missing browser skips at once.
    require_chromium()


@pytest.fixture
def out_dir(request: pytest.FixtureRequest) -> Path:
    engine_name = request.node.callspec.params.get("db_url", "db")
    folder = OUTPUT / str(engine_name)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_user_journey_in_chromium(
    app: FastAPI,
    settings: Settings,
    engine: Engine,
    people: People,
    out_dir: Path,
    tmp_path: Path,
) -> None:
    subject = tmp_path / "subject.png"
    subject.write_bytes(png_bytes((160, 200), "#c85"))
    with live_server(app) as base, chromium() as browser:
        ctx = browser.new_context(viewport=DESKTOP, accept_downloads=True)
        page = ctx.new_page()
        console = ConsoleErrors(page)

        # Sign in: the form, then a cookie page script cannot read.
        page.goto(f"{base}/ui/generations")
        assert "/ui/sign-in" in page.url
        _shot(page, out_dir, "01-sign-in")
        _sign_in(page, base, people.user.api_key)
        assert page.url.endswith("/ui/generations")
        assert page.evaluate("document.cookie") == ""
        cookie = next(c for c in ctx.cookies() if c["name"] == "posegen_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

        # A project with an uploaded subject, then the generation form (no worker running yet).
        page.goto(f"{base}/ui/generations/new")
        page.get_by_label("Name").fill("Avatar")
        page.get_by_label("Subject image").set_input_files(str(subject))
        page.get_by_role("button", name="Create project").click()
        page.wait_for_url(lambda url: "/generations/new?project=" in url)
        page.locator("input[name=pose_id][value='1']").check()
        page.locator("input[name=pose_id][value='2']").check()
        page.get_by_label("Variations per pose").fill("2")
        _shot(page, out_dir, "02-new-generation")
        page.get_by_role("button", name="Start generation").click()
        page.wait_for_url(lambda url: url.endswith("?notice=submitted"))
        gen_id = int(page.url.split("/ui/generations/")[1].split("?")[0])

        # Forged POSTs: a same-origin one with a wrong token, and a cross-site form.
        forged = page.evaluate(
            """id => fetch(`/ui/generations/${id}/cancel`, {method: 'POST',
                 body: new URLSearchParams({csrf_token: 'forged'})}).then(r => r.status)""",
            gen_id,
        )
        assert forged == 403
        console.errors.clear()  # the browser logs that refusal as a failed resource
        attacker = ctx.new_page()
        attacker.route(
            "http://attacker.test/",
            lambda route: route.fulfill(
                content_type="text/html",
                body=f"<form id=f method=post action='{base}/ui/generations/{gen_id}/cancel'>"
                "<input name=csrf_token value=x></form><script>f.submit()</script>",
            ),
        )
        attacker.goto("http://attacker.test/")
        attacker.wait_for_load_state()
        attacker.close()
        assert generations_read.get_visible(engine, gen_id, None).status == GenerationStatus.PENDING

        # The list's progress bar follows the event stream once a worker starts.
        page.goto(f"{base}/ui/generations")
        bar = page.locator(f"[data-generation='{gen_id}'] progress")
        assert bar.evaluate("el => el.value") == 0
        page.evaluate(
            """() => { window.seen = [];
                 const el = document.querySelector('[data-live-generation]');
                 new MutationObserver(() => window.seen.push(Number(el.dataset.percent)))
                   .observe(el, {attributes: true, attributeFilter: ['data-percent']}); }"""
        )
        _shot(page, out_dir, "03-generations-queued")
        with worker_thread(settings, engine):
            item = f"[data-generation='{gen_id}']"
            page.wait_for_function(
                """sel => { const el = document.querySelector(sel + ' .progress');
                    return el && el.dataset.ended === 'completed'; }""",
                arg=item,
                timeout=60_000,
            )
            assert bar.evaluate("el => el.value") == 100
            assert page.locator(f"{item} [data-role=status]").inner_text() == "completed"
            seen = page.evaluate("window.seen")
            assert seen and seen[-1] == 100 and seen == sorted(seen), seen
            _shot(page, out_dir, "04-generations-done")

            # Gallery: every thumbnail and pose map really loaded.
            page.get_by_role("link", name=f"#{gen_id}").click()
            page.wait_for_url(f"**/ui/generations/{gen_id}")
            widths = images_loaded(page, "img.thumb") + images_loaded(page, "img.map")
            assert len(widths) == 8 and all(w > 0 for w in widths), widths
            _shot(page, out_dir, "05-gallery")

            # The ZIP downloads and holds the four images.
            with page.expect_download() as info:
                page.locator("#download-zip").click()
            target = tmp_path / "gallery.zip"
            info.value.save_as(str(target))
            with zipfile.ZipFile(target) as z:
                assert z.testzip() is None
                assert sorted(z.namelist()) == ["p1-v0.png", "p1-v1.png", "p2-v0.png", "p2-v1.png"]

            # A click on a thumbnail opens the full image.
            page.locator("img.thumb").first.click()
            page.wait_for_url("**/results/*/image")
            assert page.evaluate("document.images[0].naturalWidth") == settings.default_width
            page.go_back()

            page.goto(f"{base}/ui/library")
            assert all(w > 0 for w in images_loaded(page, "#library img")[:4])
            _shot(page, out_dir, "06-library")
        assert console.errors == [], console.errors

        # Phone width: no page is wider than the screen.
        phone = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
        mobile = phone.new_page()
        _sign_in(mobile, base, people.admin.api_key)
        for name, path in (
            ("overview", "/ui/overview"),
            ("top-users", "/ui/top-users"),
            ("generations", "/ui/generations"),
            ("gallery", f"/ui/generations/{gen_id}"),
            ("new-generation", "/ui/generations/new"),
            ("library", "/ui/library"),
        ):
            mobile.goto(base + path)
            assert no_horizontal_overflow(mobile), name
            _shot(mobile, out_dir, f"phone-{name}")
        phone.close()

        # The operator pages with the admin on a desktop: the chart is drawn from live figures.
        admin = browser.new_context(viewport=DESKTOP).new_page()
        _sign_in(admin, base, people.admin.api_key)
        assert admin.url.endswith("/ui/overview")
        admin.wait_for_function("() => window.Chart && Chart.getChart('per-minute-chart')")
        total = admin.evaluate(
            "Chart.getChart('per-minute-chart').data.datasets"
            ".reduce((n, d) => n + d.data.reduce((a, b) => a + b, 0), 0)"
        )
        assert total == 1
        _shot(admin, out_dir, "07-overview")
        admin.goto(f"{base}/ui/top-users")
        assert "Uma User" in admin.locator("#top-users").inner_text()
        _shot(admin, out_dir, "08-top-users")

        # Another user sees neither the generation nor the operator pages.
        other = browser.new_context(viewport=DESKTOP).new_page()
        _sign_in(other, base, people.other.api_key)
        response = other.goto(f"{base}/ui/generations/{gen_id}")
        assert response is not None and response.status == 404
        response = other.goto(f"{base}/ui/overview")
        assert response is not None and response.status == 403
        _shot(other, out_dir, "09-other-user-refused")
        assert f"#{gen_id}" not in other.goto(f"{base}/ui/generations").text()  # type: ignore[union-attr]


def test_keyboard_reaches_sign_in_and_navigation(app: FastAPI, people: People) -> None:
    with live_server(app) as base, chromium() as browser:
        page = browser.new_page(viewport=DESKTOP)
        page.goto(f"{base}/ui/sign-in")
        # The key field has focus on arrival: type, Enter, signed in.
        assert page.evaluate("document.activeElement.id") == "api_key"
        page.keyboard.type(people.user.api_key)
        page.keyboard.press("Enter")
        page.wait_for_url("**/ui/generations")
        page.keyboard.press("Tab")  # the skip link comes first
        assert page.evaluate("document.activeElement.textContent") == "Skip to content"
        labels = []
        for _ in range(8):
            page.keyboard.press("Tab")
            labels.append(page.evaluate("document.activeElement.textContent.trim()"))
        assert "Generations" in labels and "Pose library" in labels and "Sign out" in labels
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"
