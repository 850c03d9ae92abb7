"""The API's request ids, the generation log table, and the dashboard's timings and log page."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from posegen import accounts, observe, projects, queue
from posegen.api.app import create_app
from posegen.config import Settings
from posegen.db.models import GenerationLog, GenerationType, Role
from posegen.library import seed_library
from posegen.observe import dblog
from posegen.worker import Worker
from posegen.worker.pipeline import make_handler


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine)) as c:
        yield c


@pytest.fixture
def info_logs() -> Iterator[None]:
    """posegen's INFO lines reach the root handlers (the CLI sets this; a test process does not)."""
    logger = logging.getLogger("posegen")
    before = logger.level
    logger.setLevel(logging.INFO)
    yield
    logger.setLevel(before)


def test_request_ids_are_echoed_or_made(client: TestClient) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-1:2.3"}).headers["X-Request-ID"]
        == "abc-1:2.3"
    )
    made = client.get("/healthz").headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert client.get("/healthz").headers["X-Request-ID"] != made
    for refused in ("two words", "x" * 129, "pg_" + secrets.token_urlsafe(32), 'a;b="c"'):
        got = client.get("/healthz", headers={"X-Request-ID": refused}).headers["X-Request-ID"]
        assert re.fullmatch(r"[0-9a-f]{32}", got), refused
    # Errors carry one too: a 404 problem and a body refused before the app runs.
    assert client.get("/api/pose-generator/nowhere").headers["X-Request-ID"]
    too_big = client.post(
        "/api/pose-generator/projects",
        content=b"x",
        headers={"Content-Length": str(10**9), "X-Request-ID": "big-1"},
    )
    assert too_big.status_code == 413 and too_big.headers["X-Request-ID"] == "big-1"


def _generation(engine: Engine, settings: Settings, user_id: int) -> int:
    project = projects.create(engine, user_id, "timed", None)
    req = queue.GenerationRequest(
        user_id=user_id,
        project_id=project.id,
        type=GenerationType.LIBRARY,
        pose_ids=[1, 2],
        variations=1,
        width=128,
        height=128,
    )
    return queue.submit(engine, settings, req).generation_id


def _sign_in(client: TestClient, api_key: str) -> None:
    form = client.get("/ui/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token
    done = client.post(
        "/ui/sign-in",
        data={"csrf_token": token.group(1), "api_key": api_key, "next": ""},
        follow_redirects=False,
    )
    assert done.status_code == 303, done.text[:300]


def test_the_generation_page_shows_timings_and_operators_get_its_log(
    settings: Settings, engine: Engine, info_logs: None
) -> None:
    seed_library(engine)
    owner = accounts.create_user(engine, "Owen", "owen@example.com")
    admin = accounts.create_user(engine, "Ada", "ada@example.com", Role.ADMIN)
    gid = _generation(engine, settings, owner.account.id)
    handler = dblog.attach(engine)
    try:
        Worker(settings, engine, make_handler(settings), concurrency=1, burst=True).run()
    finally:
        dblog.detach(handler)  # flushes what is queued

    lines = dblog.lines(engine, gid)
    messages = [line["message"] for line in lines]
    assert messages[0] == "generation claimed" and messages[-1] == "attempt ended"
    assert messages.count("pose written") == 2
    written = [line["fields"] for line in lines if line["message"] == "pose written"]
    assert {f["pose_id"] for f in written} == {1, 2}
    assert all(f["write_ms"] > 0 and f["lease_token"] == 1 for f in written)

    app = create_app(settings, engine)
    with TestClient(app) as as_owner, TestClient(app) as as_admin:
        _sign_in(as_owner, owner.api_key)
        page = as_owner.get(f"/ui/generations/{gid}").text
        rows = re.findall(r"<tr><td>(p\d+-v\d+)</td><td>completed</td>(.*?)</tr>", page)
        # one row per pose, in the order they were written (which of the two ends first varies)
        assert sorted(key for key, _ in rows) == ["p1-v0", "p2-v0"]
        for _, cells in rows:
            values = re.findall(r'<td class="num">([^<]+)</td>', cells)
            assert len(values) == 4 and all(float(v) >= 0 for v in values)  # none missing
        assert "/log" not in page  # the log is for operators
        assert as_owner.get(f"/ui/generations/{gid}/log").status_code == 403

        _sign_in(as_admin, admin.api_key)
        assert f'href="/ui/generations/{gid}/log"' in as_admin.get(f"/ui/generations/{gid}").text
        log_page = as_admin.get(f"/ui/generations/{gid}/log")
        assert log_page.status_code == 200
        assert log_page.text.count("pose written") == 2 and "generation claimed" in log_page.text
        assert as_admin.get("/ui/generations/999999/log").status_code == 404


def test_the_stored_log_is_bounded_per_generation(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_library(engine)
    user = accounts.create_user(engine, "Bo", "bo@example.com")
    gid = _generation(engine, settings, user.account.id)
    monkeypatch.setattr(dblog, "MAX_LINES_PER_GENERATION", 5)
    logger = logging.getLogger("posegen.test.bounded")
    handler = dblog.GenerationLogHandler(engine, interval=0.05)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with observe.log_context(generation_id=gid):
            for i in range(20):
                logger.info("line %d", i)
            for i in range(20):
                logger.warning("trouble %d", i)
        logger.info("not about a generation")
        logger.info("a generation that does not exist", extra={"generation_id": 10**9})
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = dblog.lines(engine, gid)
    kept = [line["message"] for line in lines]
    # The first 5 lines, then warnings up to twice the bound (lines 6-10 overall).
    assert kept == [f"line {i}" for i in range(5)] + [f"trouble {i}" for i in range(5)]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(GenerationLog)).scalar_one() == 10


def test_a_burst_of_lines_is_stored_whole_across_batches(
    settings: Settings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_library(engine)
    user = accounts.create_user(engine, "Bea", "bea@example.com")
    gid = _generation(engine, settings, user.account.id)
    monkeypatch.setattr(dblog, "MAX_LINES_PER_GENERATION", 5000)
    logger = logging.getLogger("posegen.test.burst")
    handler = dblog.GenerationLogHandler(engine, interval=0.2)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for i in range(1234):  # more than two full batches of 500
            logger.info("burst %d", i, extra={"generation_id": gid, "i": i})
    finally:
        logger.removeHandler(handler)
        handler.close()
    lines = dblog.lines(engine, gid, limit=2000)
    assert [line["fields"]["i"] for line in lines] == list(range(1234))
