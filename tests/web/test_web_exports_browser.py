"""Exports in headless Chromium: on a finished generation, ask for a format on the page; a real
worker makes it while the page follows the reopened event stream, and the page shows the export
buttons and the ZIP by format without a manual reload."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from browser_harness import OUTPUT, ConsoleErrors, chromium, live_server, require_chromium
from fastapi import FastAPI
from sqlalchemy import Engine
from web_helpers import People, run_until_idle, submit_library, worker_thread

from posegen import exporting
from posegen.config import Settings

pytestmark = pytest.mark.browser


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    require_chromium()


def _sign_in(page: Any, base: str, key: str) -> None:
    page.goto(f"{base}/ui/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/sign-in" not in url)


def test_exports_asked_on_the_page_appear_when_the_worker_is_done(
    app: FastAPI, settings: Settings, engine: Engine, people: People, request: Any
) -> None:
    gid = submit_library(engine, settings, people.user.account.id, [1, 2])
    run_until_idle(settings, engine)
    fmt = sorted(exporting.formats(settings))[0]
    folder = OUTPUT / str(request.node.callspec.params.get("db_url", "db"))
    folder.mkdir(parents=True, exist_ok=True)
    with live_server(app) as base, chromium() as browser:
        page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        console = ConsoleErrors(page)
        _sign_in(page, base, people.user.api_key)
        page.goto(f"{base}/ui/generations/{gid}")
        assert page.locator("#export-zips").count() == 0
        page.locator(f"#export-form input[value='{fmt}']").check()
        page.get_by_role("button", name="Make exports").click()
        page.wait_for_selector("[data-live-tasks]")  # queued: the page follows the stream
        with worker_thread(settings, engine):
            # No reload by the test: the page reloads itself when the tasks settle.
            page.wait_for_selector(f"#export-zips a[href$='formats={fmt}']", timeout=60_000)
        links = page.locator(f"[data-role='exports'] a[href$='/exports/{fmt}']")
        assert links.count() == 2
        page.screenshot(path=str(Path(folder) / "exports.png"), full_page=True)
        assert console.errors == []
