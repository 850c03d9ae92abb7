"""Acceptance: an API and two workers as separate processes with separate data directories,
sharing nothing but PostgreSQL and the object store. A user uploads a subject, submits, follows
SSE to the end and downloads images, thumbnails and the ZIP from the API; then a worker is
SIGKILLed mid-generation and the other one finishes it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from pipeline_world import World  # type: ignore[import-not-found]
from s3_server import S3Server, running  # type: ignore[import-not-found]
from sqlalchemy import select

from posegen import accounts
from posegen.db.models import PoseGeneration, PoseLibrary, User

PREFIX = "/api/pose-generator"


@pytest.fixture(scope="module")
def s3_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running(tmp_path_factory.mktemp("weed2")) as server:
        yield server


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _gen(world: World, gid: int) -> Any:
    with world.engine.connect() as conn:
        return conn.execute(select(PoseGeneration).where(PoseGeneration.id == gid)).one()


def test_api_and_two_workers_share_only_postgres_and_the_bucket(
    world: World, s3_module: S3Server, tmp_path: Path
) -> None:
    if world.settings.is_sqlite:
        pytest.skip("separate hosts share a PostgreSQL server, not a SQLite file")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("POSEGEN_", "AWS_"))}
    base_env.update(
        s3_module.env(),
        POSEGEN_DATABASE_URL=world.settings.effective_database_url,
        POSEGEN_S3_PREFIX=f"hosts{time.monotonic_ns()}",
        POSEGEN_LEASE_SECONDS="3",
        POSEGEN_POLL_INTERVAL_SECONDS="0.05",
        POSEGEN_RECOVERY_INTERVAL_SECONDS="0.5",
        POSEGEN_RETRY_BACKOFF_BASE_SECONDS="0",
        POSEGEN_WORKER_CONCURRENCY="1",
        POSEGEN_FETCH_ALLOWLIST="127.0.0.1",
    )
    port = _port()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    stack = contextlib.ExitStack()

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        env = {**base_env, "POSEGEN_DATA_DIR": str(tmp_path / name)}
        log = stack.enter_context((tmp_path / f"{name}.log").open("wb"))
        procs[name] = subprocess.Popen(
            [sys.executable, "-m", "posegen", *args], env=env, stdout=log, stderr=log
        )
        return procs[name]

    try:
        start("api", "serve", "--port", str(port))
        workers = {n: start(n, "worker") for n in ("worker-a", "worker-b")}
        base = f"http://127.0.0.1:{port}{PREFIX}"
        with world.engine.connect() as conn:
            email = conn.execute(select(User.email).where(User.id == world.user_id)).scalar_one()
        key = accounts.issue_key(world.engine, email).api_key
        http = stack.enter_context(
            httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30)
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert procs["api"].poll() is None, (tmp_path / "api.log").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.1)

        subject = io.BytesIO()
        Image.new("RGB", (300, 240), (180, 150, 120)).save(subject, format="PNG")
        up = http.post(f"{base}/uploads", files={"file": ("me.png", subject.getvalue())})
        assert up.status_code == 201, up.text
        project = http.post(
            f"{base}/projects", json={"name": "two hosts", "subjectUploadId": up.json()["id"]}
        ).json()["id"]
        gid = http.post(
            f"{base}/generations",
            json={"projectId": project, "poseIds": world.pose_ids, "variations": 2},
        ).json()["id"]

        # Follow the event stream to its end.
        kinds = []
        with http.stream("GET", f"{base}/generations/{gid}/events", timeout=60) as events:
            for line in events.iter_lines():
                if line.startswith("event:"):
                    kinds.append(line.split(":", 1)[1].strip())
                    if kinds[-1] in ("completed", "partial", "failed", "cancelled"):
                        break
        assert kinds[-1] == "completed", kinds
        assert kinds.count("pose") == len(world.pose_ids) * 2

        results = http.get(f"{base}/generations/{gid}/results").json()
        assert len(results) == len(world.pose_ids) * 2
        for r in results:
            image = http.get(f"http://127.0.0.1:{port}{r['imageUrl']}")
            thumb = http.get(f"http://127.0.0.1:{port}{r['thumbnailUrl']}")
            assert image.status_code == thumb.status_code == 200
            assert image.content[:8] == b"\x89PNG\r\n\x1a\n" and thumb.content[:2] == b"\xff\xd8"
        archive = http.get(f"{base}/generations/{gid}/archive")
        with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
            assert zf.testzip() is None and len(zf.namelist()) == len(results)
        # Neither worker's nor the API's data directory holds a result.
        for name in procs:
            assert not list((tmp_path / name).rglob("*.png")), name

        # A big generation; the worker running it is SIGKILLed halfway, the other finishes it.
        with world.engine.connect() as conn:
            many = [int(i) for i in conn.execute(select(PoseLibrary.id).limit(8)).scalars()]
        big = http.post(
            f"{base}/generations",
            json={
                "projectId": project,
                "poseIds": many,
                "variations": 2,
                "width": 1024,
                "height": 1024,
            },
        ).json()["id"]
        deadline = time.monotonic() + 90
        while (row := _gen(world, big)).poses_completed < 2:
            assert time.monotonic() < deadline, row
            time.sleep(0.01)
        pid = int(str(row.leased_by).split(":")[1])
        victim = next(n for n, p in workers.items() if p.pid == pid)
        os.kill(pid, signal.SIGKILL)
        workers[victim].wait(10)
        deadline = time.monotonic() + 90
        while (row := _gen(world, big)).status != "completed":
            assert row.status in ("pending", "processing"), row
            assert time.monotonic() < deadline, row
            time.sleep(0.1)
        assert row.attempts == 2 and row.poses_completed == len(many) * 2
        survivor = next(p for n, p in workers.items() if n != victim)
        assert str(row.leased_by or "").split(":")[1:2] in ([], [str(survivor.pid)])
        archive = http.get(f"{base}/generations/{big}/archive")
        with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
            assert zf.testzip() is None and len(zf.namelist()) == len(many) * 2
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        stack.close()
    logs = {p.name: p.read_text(errors="replace") for p in tmp_path.glob("*.log")}
    assert not any("Traceback" in text for text in logs.values()), json.dumps(logs)[:4000]
