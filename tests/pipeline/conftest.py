"""Fixtures for the pipeline tests: a user with a project (subject uploaded), the built-in
library, a local origin for map URLs, and helpers to run a real worker over the real queue."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from pipeline_tiny_models import build  # type: ignore[import-not-found]
from pipeline_world import Origin, World, subject_png  # type: ignore[import-not-found]
from sqlalchemy import Engine, select

from posegen import accounts, projects, uploads
from posegen.config import Settings
from posegen.db.models import PoseLibrary, Role
from posegen.library import seed_library


@pytest.fixture
def origin() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def world(settings: Settings, engine: Engine, origin: str) -> World:
    user = accounts.create_user(engine, "Ada", "ada@example.com", Role.ADMIN).account
    seed_library(engine)
    subject = uploads.store(engine, settings, user.id, subject_png())
    project = projects.create(engine, user.id, "shoot", None, subject.id)
    with engine.connect() as conn:
        pose_ids = [
            int(i)
            for i in conn.execute(
                select(PoseLibrary.id).order_by(PoseLibrary.id).limit(3)
            ).scalars()
        ]
    return World(settings, engine, user.id, project.id, pose_ids, origin)


@pytest.fixture(scope="session")
def tiny_sd15(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Tiny random SD1.5 + ControlNet folders, built once per session (a second or two)."""
    return build(tmp_path_factory.mktemp("weights-sd15-session"), "sd15")
