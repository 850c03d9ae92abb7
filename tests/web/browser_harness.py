"""The real service on a 127.0.0.1 port (uvicorn in a thread) and Debian's Chromium via Playwright.

Playwright's own browser download cannot work here, so the tests drive ``/usr/bin/chromium``;
without it they skip, naming what is missing.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

CHROMIUM = Path(os.environ.get("POSEGEN_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container: the sandbox needs user namespaces
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
#: Where screenshots go: git-ignored, kept after the run so a person can look at them.
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "web"


def require_chromium() -> Any:
    """The Playwright module, or a skip that says what to install."""
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: apt-get install chromium")
    try:
        from playwright import sync_api
    except ImportError:
        pytest.skip("Playwright for Python not installed: pip install playwright")
    return sync_api


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        log_level="warning",
        ws="none",
        http="h11",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium browser (Playwright ``Browser``)."""
    sync_api = require_chromium()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


class ConsoleErrors:
    """Collects script errors and console errors (CSP violations among them) of a page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on(
            "console",
            lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None,
        )


def no_horizontal_overflow(page: Any) -> bool:
    """True when nothing makes the page wider than the viewport."""
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def images_loaded(page: Any, selector: str) -> list[int]:
    """Scroll each matching image into view, wait for it, and return the natural widths."""
    widths: list[int] = []
    for handle in page.query_selector_all(selector):
        handle.scroll_into_view_if_needed()
        handle.wait_for_element_state("visible")
        page.wait_for_function("img => img.complete", arg=handle, timeout=10_000)
        widths.append(int(handle.evaluate("img => img.naturalWidth")))
    return widths
