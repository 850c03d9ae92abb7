"""Helpers shared by the dashboard tests (imported by name: tests/web is on sys.path)."""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine

from posegen import accounts, projects, queue
from posegen.config import Settings
from posegen.db.models import GenerationType
from posegen.worker import Worker
from posegen.worker.pipeline import make_handler


@dataclass(frozen=True)
class People:
    """Three accounts with their API keys: a user, another user, an admin."""

    user: accounts.NewKey
    other: accounts.NewKey
    admin: accounts.NewKey


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = CSRF.search(html)
    assert found, "page has no CSRF token"
    return found.group(1)


def sign_in(client: TestClient, api_key: str, next_url: str = "") -> httpx.Response:
    """Sign in through the form (GET for the anonymous session's token, then POST)."""
    form = client.get("/ui/sign-in")
    assert form.status_code == 200, form.text[:300]
    return client.post(
        "/ui/sign-in",
        data={"csrf_token": csrf_of(form.text), "api_key": api_key, "next": next_url},
        follow_redirects=False,
    )


def signed_in_client(client: TestClient, api_key: str) -> TestClient:
    response = sign_in(client, api_key)
    assert response.status_code == 303, response.text[:300]
    return client


def png_bytes(size: tuple[int, int] = (96, 128), colour: str = "#3a7") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def submit_library(
    engine: Engine, settings: Settings, user_id: int, pose_ids: list[int], variations: int = 1
) -> int:
    """A project and a library generation for ``user_id`` (straight through the queue)."""
    project = projects.create(engine, user_id, "test project", None)
    request = queue.GenerationRequest(
        user_id=user_id,
        project_id=project.id,
        type=GenerationType.LIBRARY,
        pose_ids=pose_ids,
        variations=variations,
        width=128,
        height=128,
    )
    return queue.submit(engine, settings, request).generation_id


def run_until_idle(settings: Settings, engine: Engine) -> None:
    """Run a real worker (posemap backend) in burst mode: it exits when the queue is empty."""
    Worker(settings, engine, make_handler(settings), concurrency=2, burst=True).run()


@contextmanager
def worker_thread(settings: Settings, engine: Engine) -> Iterator[Worker]:
    """A real worker running in a thread of this process until the block ends."""
    worker = Worker(settings, engine, make_handler(settings), concurrency=2)
    thread = threading.Thread(target=worker.run, name="test-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=30)
