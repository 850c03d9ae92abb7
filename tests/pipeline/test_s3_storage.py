"""Results in a real S3 server (SeaweedFS ``weed mini``, signatures and expiry enforced).

Generations run through the real queue and a real worker with the posemap backend, on SQLite and
PostgreSQL; the API is a real uvicorn server on 127.0.0.1 and every download goes over HTTP."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from pipeline_world import World, subject_png  # type: ignore[import-not-found]
from s3_server import READER, WRITER, S3Server, SlowProxy, running  # type: ignore[import-not-found]
from sqlalchemy import func, select, update

from posegen import accounts, failures, projects, retention, uploads
from posegen.api.app import create_app
from posegen.api.zipstream import BLOCK, stream_zip
from posegen.db.models import GeneratedPose, GenerationEvent, PoseGeneration, Project, User
from posegen.db.models import Worker as WorkerRow
from posegen.db.types import utcnow
from posegen.exceptions import ConfigError, InvalidInput, NotFound
from posegen.storage import s3
from posegen.storage.s3 import S3Storage, S3Uploads
from posegen.worker import Worker
from posegen.worker.pipeline import PipelineHandler, make_handler

sys.path.insert(0, str(Path(__file__).parents[1] / "api"))
from live_server import live_server  # type: ignore[import-not-found]

PREFIX = "/api/pose-generator"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with running(tmp_path_factory.mktemp("weed")) as server:
        yield server


@pytest.fixture
def use_creds(monkeypatch: pytest.MonkeyPatch, s3_server: S3Server) -> Any:
    """Point boto3's standard credential chain at ``creds`` (a fresh client picks them up)."""

    def use(creds: tuple[str, str]) -> None:
        for name, value in s3_server.env(creds).items():
            if name.startswith("AWS_"):
                monkeypatch.setenv(name, value)
        s3._client.cache_clear()

    use(WRITER)
    yield use
    s3._client.cache_clear()


@pytest.fixture
def s3_world(world: World, s3_server: S3Server, use_creds: Any, request: Any) -> World:
    # A prefix per test: tests share the bucket, never each other's keys.
    settings = world.settings.model_copy(
        update={
            "storage": "s3",
            "s3_endpoint_url": s3_server.endpoint,
            "s3_bucket": s3_server.bucket,
            "s3_path_style": True,
            "s3_prefix": f"t{time.monotonic_ns()}",
        }
    )
    # The world's subject went to the local uploads folder; this project's is in the bucket.
    subject = uploads.store(world.engine, settings, world.user_id, subject_png())
    project = projects.create(world.engine, world.user_id, "in the bucket", None, subject.id)
    return dataclasses.replace(world, settings=settings, project_id=project.id)


def _keys(world: World) -> list[str]:
    store = S3Storage(world.settings)
    pages = store.client.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=store.prefix
    )
    return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))


def _completed(world: World, gid: int) -> list[Any]:
    with world.engine.connect() as conn:
        return list(
            conn.execute(
                select(GeneratedPose)
                .where(GeneratedPose.generation_id == gid, GeneratedPose.status == "completed")
                .order_by(GeneratedPose.id)
            )
        )


def _key(world: World) -> str:
    with world.engine.connect() as conn:
        email = conn.execute(select(User.email).where(User.id == world.user_id)).scalar_one()
    return accounts.issue_key(world.engine, email).api_key


def test_generation_results_live_in_the_bucket_and_download_over_http(s3_world: World) -> None:
    world = s3_world
    gid = world.submit()
    world.run_pipeline()
    rows = _completed(world, gid)
    assert len(rows) == len(world.pose_ids) * 2
    store = S3Storage(world.settings)
    expected = sorted(store.key(r.image_path) for r in rows) + sorted(
        store.key(r.thumbnail_path) for r in rows
    )
    assert _keys(world) == sorted(expected)
    # Nothing went to this host's disk.
    results_dir = world.settings.effective_results_dir
    assert not results_dir.exists() or not any(results_dir.rglob("*.png"))

    key = _key(world)
    with (
        live_server(create_app(world.settings, world.engine), world.settings) as (base, _port),
        httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
    ):
        for row in rows:
            for what, fmt, rel in (
                ("image", "PNG", row.image_path),
                ("thumbnail", "JPEG", row.thumbnail_path),
            ):
                resp = http.get(f"{base}/generations/{gid}/results/{row.id}/{what}")
                assert resp.status_code == 200, resp.text
                assert resp.headers["cache-control"].startswith("private")
                assert resp.content == store.read(rel)
                with Image.open(io.BytesIO(resp.content)) as img:
                    assert img.format == fmt
        # Someone else cannot see them (the ownership check comes before the store).
        stranger = accounts.create_user(world.engine, "Eve", "eve@example.com").api_key
        resp = httpx.get(
            f"{base}/generations/{gid}/results/{rows[0].id}/image",
            headers={"Authorization": f"Bearer {stranger}"},
        )
        assert resp.status_code == 404

        resp = http.get(f"{base}/generations/{gid}/archive")
        assert resp.status_code == 200
        with zipfile.ZipFile(io.BytesIO(resp.content)) as archive:
            assert archive.testzip() is None
            assert sorted(archive.namelist()) == sorted(f"{r.variation_key}.png" for r in rows)
            for r in rows:
                assert archive.read(f"{r.variation_key}.png") == store.read(r.image_path)

        # Deleting the generation removes its rows, then its objects.
        assert http.delete(f"{base}/generations/{gid}").status_code == 204
        assert _keys(world) == []
        with world.engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(GeneratedPose)).scalar() == 0
            assert (
                conn.execute(
                    select(func.count())
                    .select_from(GenerationEvent)
                    .where(GenerationEvent.generation_id == gid)
                ).scalar()
                == 0
            )
        assert http.get(f"{base}/generations/{gid}").status_code == 404
        assert http.delete(f"{base}/generations/{gid}").status_code == 404


def test_delete_is_refused_while_active_and_for_others(s3_world: World) -> None:
    world = s3_world
    gid = world.submit()
    key = _key(world)
    stranger = accounts.create_user(world.engine, "Eve", "eve@example.com").api_key
    with live_server(create_app(world.settings, world.engine), world.settings) as (base, _):
        resp = httpx.delete(f"{base}/generations/{gid}", headers={"Authorization": f"Bearer {key}"})
        assert resp.status_code == 409
        assert resp.json()["kind"] == "generation-active"
        resp = httpx.delete(
            f"{base}/generations/{gid}", headers={"Authorization": f"Bearer {stranger}"}
        )
        assert resp.status_code == 404
    with world.engine.connect() as conn:
        assert conn.execute(select(PoseGeneration.id).where(PoseGeneration.id == gid)).scalar()


def test_presigned_downloads_work_then_expire(s3_world: World) -> None:
    world = s3_world
    gid = world.submit(variations=1)
    world.run_pipeline()
    row = _completed(world, gid)[0]
    settings = world.settings.model_copy(
        update={"s3_download": "redirect", "s3_presign_seconds": 2}
    )
    key = _key(world)
    with live_server(create_app(settings, world.engine), settings) as (base, _):
        resp = httpx.get(
            f"{base}/generations/{gid}/results/{row.id}/image",
            headers={"Authorization": f"Bearer {key}"},
        )
        assert resp.status_code == 307
        assert resp.headers["cache-control"] == "no-store"
        url = resp.headers["location"]
        assert url.startswith(settings.s3_endpoint_url or "")
        fetched = httpx.get(url)  # no posegen key: the signature is the authorisation
        assert fetched.status_code == 200
        assert fetched.content == S3Storage(world.settings).read(row.image_path)
        tampered = url.replace("X-Amz-Expires=2", "X-Amz-Expires=3600")
        assert httpx.get(tampered).status_code == 403
        time.sleep(3.2)
        assert httpx.get(url).status_code == 403


def test_a_bucket_that_refuses_writes_retries_the_generation_and_loses_nothing(
    s3_world: World, use_creds: Any
) -> None:
    world = s3_world
    refused = make_handler(world.settings)
    assert isinstance(refused, PipelineHandler)
    # A store outage, not the generation's fault: the breaker opens (its probe, a PUT, is
    # refused too, so it stays open) and the generation waits without spending an attempt.
    tuned = world.settings.model_copy(
        update={"breaker_threshold": 1, "breaker_probe_min_seconds": 0.2}
    )
    worker = Worker(tuned, world.engine, refused, concurrency=1)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not _registered(world, worker.id):  # started: its start-up probe wrote
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # From now on the bucket refuses this worker's writes (reads still work).
        use_creds(READER)
        refused.storage = S3Storage(world.settings)
        gid = world.submit()
        while True:
            with world.engine.connect() as conn:
                gen = conn.execute(select(PoseGeneration).where(PoseGeneration.id == gid)).one()
            if gen.status == "pending" and gen.error_message and worker.breaker.reason:
                break
            assert time.monotonic() < deadline, gen
            time.sleep(0.05)
        time.sleep(1.0)  # several probes: still paused, still no attempt spent
        with world.engine.connect() as conn:
            gen = conn.execute(select(PoseGeneration).where(PoseGeneration.id == gid)).one()
        assert worker.breaker.paused.is_set()
        assert "refused these credentials" in (worker.breaker.reason or "")
    finally:
        worker.stop()
        thread.join(30)
        refused.close()
    assert gen.attempts == 0 and gen.status == "pending", gen
    # Waiting, not failed; the reason names the store's refusal; no row names missing bytes.
    # The owner reads the sentence for the kind; the store's refusal is the admins' detail.
    assert gen.error_message == failures.SENTENCES["storage"]
    assert gen.error_detail and "refused these credentials" in gen.error_detail
    assert "reader-secret" not in gen.error_detail
    assert _completed(world, gid) == []
    assert _keys(world) == []

    use_creds(WRITER)
    with world.engine.begin() as conn:  # the retry's backoff is not what this test waits for
        conn.execute(
            update(PoseGeneration).where(PoseGeneration.id == gid).values(run_after=utcnow())
        )
    world.run_pipeline()
    with world.engine.connect() as conn:
        gen = conn.execute(select(PoseGeneration).where(PoseGeneration.id == gid)).one()
    assert gen.status == "completed"
    rows = _completed(world, gid)
    assert len(rows) == len(world.pose_ids) * 2
    store = S3Storage(world.settings)
    for r in rows:
        assert store.read(r.image_path)[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("creds", "bucket", "expected"),
    [
        (("AKIDPOSEGENWRITER", "not-the-secret"), None, "refused these credentials"),
        (("AKIDNOSUCHUSER", "whatever"), None, "refused these credentials"),
        (WRITER, "no-such-bucket", "the bucket does not exist"),
    ],
)
def test_wrong_credentials_or_bucket_are_one_line_at_start_up(
    tmp_path: Path,
    s3_server: S3Server,
    creds: tuple[str, str],
    bucket: str | None,
    expected: str,
) -> None:
    # The check happens before any database work: one engine is enough.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSEGEN_", "AWS_"))}
    env.update(s3_server.env(creds), POSEGEN_DATA_DIR=str(tmp_path / "data"))
    if bucket:
        env["POSEGEN_S3_BUCKET"] = bucket
    subprocess.run(
        [sys.executable, "-m", "posegen", "db", "upgrade"], env=env, check=True, capture_output=True
    )
    # A free port for serve; it never binds it: the check comes first.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for command in (["worker", "--burst"], ["serve", "--port", str(port)]):
        done = subprocess.run(
            [sys.executable, "-m", "posegen", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("error: cannot use bucket") and expected in lines[0]
        assert creds[1] not in done.stderr


def test_deleting_a_project_removes_its_objects(s3_world: World) -> None:
    world = s3_world
    first, second = world.submit(variations=1), world.submit([], variations=1)
    world.run_pipeline()
    assert len(_keys(world)) == 2 * (len(world.pose_ids) + 1)
    key = _key(world)
    with live_server(create_app(world.settings, world.engine), world.settings) as (base, _):
        resp = httpx.delete(
            f"{base}/projects/{world.project_id}", headers={"Authorization": f"Bearer {key}"}
        )
        assert resp.status_code == 204, resp.text
    assert _keys(world) == []
    with world.engine.connect() as conn:
        left = conn.execute(
            select(func.count())
            .select_from(PoseGeneration)
            .where(PoseGeneration.id.in_([first, second]))
        ).scalar_one()
    assert left == 0


def test_the_zip_streams_objects_in_blocks_without_holding_them(s3_world: World) -> None:
    store = S3Storage(s3_world.settings)
    members = []
    for i in range(4):
        rel = f"000000/7/p{i}-v0.png"
        store._put(rel, os.urandom(12 * BLOCK + 11 * i), "image/png")
        members.append((f"m{i}.png", functools.partial(store.open_stream, rel)))
    members.insert(2, ("gone.png", functools.partial(store.open_stream, "000000/7/gone.png")))
    tracemalloc.start()
    try:
        chunks = []
        largest = 0
        for chunk in stream_zip(members):
            largest = max(largest, len(chunk))
            chunks.append(len(chunk))
            del chunk
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 4 objects of 3 MiB each: no chunk, and at no moment the process, holds one of them
    # (a few copies of one 256 KiB block: the read, the ZIP's write, the chunk handed out).
    assert largest <= BLOCK + 1024
    assert peak < 6 * BLOCK, peak
    data = b"".join(
        stream_zip(
            [
                (n, functools.partial(store.open_stream, f"000000/7/p{i}-v0.png"))
                for i, n in enumerate(f"m{j}.png" for j in range(4))
            ]
        )
    )
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [f"m{i}.png" for i in range(4)]
        for i in range(4):
            assert archive.read(f"m{i}.png") == store.read(f"000000/7/p{i}-v0.png")
    assert sum(chunks) == len(data)  # the missing member was left out, the rest are whole
    assert store.delete_generation(7) == 4


def test_a_slow_store_times_out_and_the_generation_is_retried(
    s3_world: World, s3_server: S3Server
) -> None:
    proxy = SlowProxy(s3_server.endpoint)
    try:
        settings = s3_world.settings.model_copy(
            update={"s3_endpoint_url": proxy.endpoint, "s3_timeout_seconds": 0.5}
        )
        world = dataclasses.replace(s3_world, settings=settings)
        slow = make_handler(settings)
        assert isinstance(slow, PipelineHandler)
        worker = Worker(settings, world.engine, slow, concurrency=1)
        thread = threading.Thread(target=worker.run)
        thread.start()
        try:
            deadline = time.monotonic() + 60
            while not _registered(world, worker.id):  # past its start-up probe
                assert time.monotonic() < deadline
                time.sleep(0.05)
            proxy.delay = 2.0  # the store turns slow while the worker runs
            started = time.monotonic()
            gid = world.submit()
            gen = _wait_for_retry(world, gid)
        finally:
            worker.stop()
            thread.join(30)
            slow.close()
        # Bounded by the timeout (three tries of 0.5 s), not by the store's 2 s per answer.
        assert time.monotonic() - started < 30
        # A slow store is an outage: the generation waits without spending an attempt.
        assert gen.attempts == 0
        # The subject is read from the store first: that read is what timed out. The reason
        # names neither the key nor the content hash.
        assert gen.error_kind == "storage", gen
        assert gen.error_message == failures.SENTENCES["storage"]
        assert gen.error_detail == "subject image: the object store is unavailable"
        assert _completed(world, gid) == []

        proxy.delay = 0.0
        with world.engine.begin() as conn:
            conn.execute(
                update(PoseGeneration).where(PoseGeneration.id == gid).values(run_after=utcnow())
            )
        world.run_pipeline()
        rows = _completed(world, gid)
        assert len(rows) == len(world.pose_ids) * 2
        store = S3Storage(settings)
        for r in rows:
            assert store.read(r.thumbnail_path)[:2] == b"\xff\xd8"
    finally:
        proxy.close()


def _wait_for_retry(world: World, gid: int) -> Any:
    deadline = time.monotonic() + 60
    while True:
        with world.engine.connect() as conn:
            gen = conn.execute(select(PoseGeneration).where(PoseGeneration.id == gid)).one()
        if gen.status == "pending" and gen.error_message:
            return gen
        assert time.monotonic() < deadline, gen
        time.sleep(0.05)


def test_server_side_encryption_is_asked_for_on_every_write(s3_world: World) -> None:
    settings = s3_world.settings.model_copy(update={"s3_sse": "AES256"})
    store = S3Storage(settings)
    stored = store.save_result(9, "p1-v0", _png())
    for rel in (stored.image, stored.thumbnail):
        head = store.client.head_object(Bucket=store.bucket, Key=store.key(rel))
        assert head["ServerSideEncryption"] == "AES256"
    assert store.read(stored.image) == _png()
    assert store.delete_generation(9) == 2


def test_names_are_checked_before_any_request_and_a_bucket_is_required(
    s3_world: World,
) -> None:
    store = S3Storage(s3_world.settings)
    for bad in ("../../etc/passwd", "000000/1/../../x.png", "000000/1/p1-v0.png?x", ""):
        with pytest.raises(InvalidInput):
            store.read(bad)
        with pytest.raises(InvalidInput):
            store.presign(bad, 60)
    with pytest.raises(NotFound):
        store.read("000000/1/p1-v0.png")
    with pytest.raises(NotFound):
        store.presign("000000/1/p1-v0.png", 60)
    with pytest.raises(ConfigError, match="POSEGEN_S3_BUCKET"):
        S3Storage(s3_world.settings.model_copy(update={"s3_bucket": ""}))


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_uploads_live_in_the_bucket_from_upload_to_generation_to_release(
    s3_world: World,
) -> None:
    world = s3_world
    key = _key(world)
    subject = _png()
    auth = {"Authorization": f"Bearer {key}"}
    with (
        live_server(create_app(world.settings, world.engine), world.settings) as (base, _),
        httpx.Client(headers=auth, timeout=30) as http,
    ):
        resp = http.post(f"{base}/uploads", files={"file": ("s.png", subject, "image/png")})
        assert resp.status_code == 201, resp.text
        upload = resp.json()
        store = S3Uploads(world.settings)
        rel = f"{world.user_id}/{upload['sha256'][:2]}/{upload['sha256']}.png"
        assert store.get(rel, 10**6) == subject
        # Not on this host's disk.
        uploads_dir = world.settings.effective_uploads_dir
        assert not any(p.name.endswith(upload["sha256"] + ".png") for p in uploads_dir.rglob("*"))
        assert http.get(f"{base}/uploads/{upload['id']}/content").content == subject
        # The same bytes again: the same row, still one object.
        again = http.post(f"{base}/uploads", files={"file": ("s.png", subject, "image/png")})
        assert again.json()["id"] == upload["id"]

        body = {"name": "from s3", "subjectUploadId": upload["id"]}
        project = http.post(f"{base}/projects", json=body).json()["id"]
        gen = http.post(
            f"{base}/generations",
            json={"projectId": project, "poseIds": world.pose_ids[:1], "variations": 1},
        )
        assert gen.status_code == 202, gen.text
        world.run_pipeline()
        final = http.get(f"{base}/generations/{gen.json()['id']}").json()
        assert final["status"] == "completed", final

        # The project was the upload's last user: deleting it removes the row, then the object.
        assert http.delete(f"{base}/projects/{project}").status_code == 204
        assert http.get(f"{base}/uploads/{upload['id']}").status_code == 404
        assert not store.exists(rel)


def test_a_missing_upload_object_is_subject_unavailable_not_a_crash(s3_world: World) -> None:
    world = s3_world
    view = uploads.store(world.engine, world.settings, world.user_id, _png())
    project = projects.create(world.engine, world.user_id, "gone", None, view.id)
    S3Uploads(world.settings).delete(view.relpath)  # removed behind the database's back
    gid = dataclasses.replace(world, project_id=project.id).submit(variations=1)
    world.run_pipeline()
    with world.engine.connect() as conn:
        gen = conn.execute(select(PoseGeneration).where(PoseGeneration.id == gid)).one()
    assert gen.status == "failed"
    assert gen.error_kind == "subject-unavailable"
    assert view.sha256 not in (gen.error_message or "")
    assert view.sha256 not in (gen.error_detail or "")


def test_a_library_map_upload_is_served_from_the_bucket(s3_world: World) -> None:
    world = s3_world  # the world's user is an admin
    auth = {"Authorization": f"Bearer {_key(world)}"}
    drawn = Image.new("RGB", (128, 96), (0, 0, 0))
    drawn.paste((255, 0, 0), (40, 30, 60, 50))
    buf = io.BytesIO()
    drawn.save(buf, format="PNG")
    with (
        live_server(create_app(world.settings, world.engine), world.settings) as (base, _),
        httpx.Client(headers=auth, timeout=30) as http,
    ):
        resp = http.post(
            f"{base}/library/poses",
            data={"name": "From the bucket", "category": "1"},
            files={"map": ("m.png", buf.getvalue(), "image/png")},
        )
        assert resp.status_code == 201, resp.text
        pose = resp.json()
        view = uploads.get(world.engine, pose["mapUploadId"], world.user_id)
        assert S3Uploads(world.settings).exists(view.relpath)
        assert not world.settings.effective_uploads_dir.exists() or not any(
            p.is_file() and view.sha256 in p.name
            for p in world.settings.effective_uploads_dir.rglob("*")
        )
        got = http.get(f"{base}/library/poses/{pose['id']}/map")
        assert got.status_code == 200, got.text
        with Image.open(io.BytesIO(got.content)) as served:
            # The drawn map, however the map cache frames it: its red patch is there.
            colours = served.convert("RGB").getcolors(1 << 16) or []
            assert any(r > 200 and g < 60 and b < 60 for _n, (r, g, b) in colours)


def test_the_dashboard_serves_results_and_the_zip_from_the_bucket(s3_world: World) -> None:
    world = s3_world
    gid = world.submit(variations=1)
    world.run_pipeline()
    rows = _completed(world, gid)
    assert len(rows) == len(world.pose_ids)
    store = S3Storage(world.settings)
    from fastapi.testclient import TestClient

    sys.path.insert(0, str(Path(__file__).parents[1] / "web"))
    from web_helpers import signed_in_client  # type: ignore[import-not-found]

    with TestClient(create_app(world.settings, world.engine)) as raw:
        client = signed_in_client(raw, _key(world))
        for r in rows:
            image = client.get(f"/ui/generations/{gid}/results/{r.id}/image")
            assert image.status_code == 200
            assert image.content == store.read(r.image_path)
            thumb = client.get(f"/ui/generations/{gid}/results/{r.id}/thumbnail")
            assert thumb.headers["content-type"] == "image/jpeg"
            assert thumb.content == store.read(r.thumbnail_path)
        archive = client.get(f"/ui/generations/{gid}/archive")
        assert archive.status_code == 200
        with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
            assert sorted(zf.namelist()) == sorted(f"{r.variation_key}.png" for r in rows)


def test_a_store_that_stops_answering_pauses_the_worker_and_spends_no_attempt(
    s3_world: World, s3_server: S3Server
) -> None:
    """The real server stopped (SIGSTOP: connections hang, like a store gone away) while a
    worker runs: the generation waits with no attempt spent, the worker is paused, and the
    same worker finishes the generation once the store answers again."""
    settings = s3_world.settings.model_copy(
        update={
            "s3_timeout_seconds": 0.5,
            "breaker_threshold": 1,
            "breaker_probe_min_seconds": 0.3,
            "breaker_probe_max_seconds": 1.0,
        }
    )
    world = dataclasses.replace(s3_world, settings=settings)
    handler = make_handler(settings)
    worker = Worker(settings, world.engine, handler, concurrency=1)
    thread = threading.Thread(target=worker.run)
    thread.start()
    stopped = False
    try:
        deadline = time.monotonic() + 60
        while not _registered(world, worker.id):  # past its start-up probe
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(s3_server.pid, signal.SIGSTOP)
        stopped = True
        gid = world.submit()
        gen = _wait_for_retry(world, gid)
        while not worker.breaker.paused.is_set():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(2.0)  # probes keep failing meanwhile
        with world.engine.connect() as conn:
            gen = conn.execute(select(PoseGeneration).where(PoseGeneration.id == gid)).one()
            paused = conn.execute(
                select(WorkerRow.paused_reason).where(WorkerRow.id == worker.id)
            ).scalar_one()
        assert gen.status == "pending" and gen.attempts == 0, gen
        assert gen.error_kind == "storage"
        assert paused and "object store" in paused
        assert _completed(world, gid) == []
        os.kill(s3_server.pid, signal.SIGCONT)
        stopped = False
        deadline = time.monotonic() + 90
        while True:
            with world.engine.connect() as conn:
                gen = conn.execute(select(PoseGeneration).where(PoseGeneration.id == gid)).one()
            if gen.status == "completed":
                break
            assert time.monotonic() < deadline, gen
            time.sleep(0.1)
    finally:
        if stopped:
            os.kill(s3_server.pid, signal.SIGCONT)
        worker.stop()
        thread.join(30)
        handler.close()
    assert gen.attempts == 1  # the claim that finished it; the outage cost nothing
    assert not worker.breaker.paused.is_set()
    rows = _completed(world, gid)
    assert len(rows) == len(world.pose_ids) * 2
    store = S3Storage(settings)
    for r in rows:
        assert store.read(r.image_path)[:8] == b"\x89PNG\r\n\x1a\n"


def _registered(world: World, worker_id: str) -> bool:
    with world.engine.connect() as conn:
        return (
            conn.execute(select(WorkerRow.id).where(WorkerRow.id == worker_id)).first() is not None
        )


def test_the_sweep_deletes_bucket_orphans_once_old_and_never_named_or_fresh_ones(
    s3_world: World,
) -> None:
    world = s3_world
    gid = world.submit(variations=1)
    world.run_pipeline()
    store = S3Storage(world.settings)
    named = _keys(world)
    assert named
    # The put without its row: a worker that died between the PUT and the commit.
    orphan = store.save_result(gid, "p999-v0", _png())
    never = store.save_result(gid + 1000, "p1-v0", _png())
    ups = S3Uploads(world.settings)
    lost = f"{world.user_id}/ab/{'ab' * 32}.png"
    ups.put(lost, _png())
    subject = uploads.get(world.engine, _subject_id(world), world.user_id)
    assert ups.exists(subject.relpath)
    settings = world.settings.model_copy(update={"orphan_grace_seconds": 60})

    now = utcnow()
    fresh = retention.prune(world.engine, settings, now=now)
    assert fresh.errors == []
    assert fresh.orphans["results"].count == 0 and fresh.orphans["uploads"].count == 0
    assert len(_keys(world)) == len(named) + 4 and ups.exists(lost)  # fresh: all still there

    dry = retention.prune(world.engine, settings, now=now + dt.timedelta(seconds=120), dry_run=True)
    assert dry.orphans["results"].count == 4 and dry.orphans["uploads"].count == 1
    assert len(_keys(world)) == len(named) + 4

    later = retention.prune(world.engine, settings, now=now + dt.timedelta(seconds=120))
    assert later.errors == []
    assert later.orphans["results"].count == 4
    assert later.orphans["results"].bytes == orphan.bytes + never.bytes
    assert later.orphans["uploads"].count == 1
    assert _keys(world) == named  # the rows' objects stay
    assert not ups.exists(lost)
    assert ups.exists(subject.relpath)  # the project's subject: named by its row


def _subject_id(world: World) -> int:
    with world.engine.connect() as conn:
        upload_id = conn.execute(
            select(Project.subject_upload_id).where(Project.id == world.project_id)
        ).scalar_one()
    assert upload_id is not None
    return int(upload_id)


def test_exports_live_in_the_bucket_download_zip_and_go_with_the_generation(
    s3_world: World,
) -> None:
    from posegen import exporting

    world = s3_world
    first, second = sorted(exporting.formats(world.settings))[:2]
    gid = world.submit(variations=1, export_formats=(first,))
    world.run_pipeline()
    exporting.request(world.engine, world.settings, gid, [second])
    world.run_pipeline()  # the export task, through the same store
    exported = [k for k in _keys(world) if ".x-" in k]
    assert len(exported) == 2 * len(world.pose_ids)
    assert {k.split(".x-")[1].split(".")[0] for k in exported} == {first, second}
    key = _key(world)
    with (
        live_server(create_app(world.settings, world.engine), world.settings) as (base, _),
        httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
    ):
        listing = http.get(f"{base}/generations/{gid}/results").json()
        for item in listing:
            assert sorted(e["format"] for e in item["exports"]) == [first, second]
            one = item["exports"][0]
            got = http.get(base.removesuffix(PREFIX) + one["url"])
            assert got.status_code == 200 and len(got.content) == one["bytes"]
        z = http.get(f"{base}/generations/{gid}/archive", params={"formats": f"{first},{second}"})
        assert z.status_code == 200
        with zipfile.ZipFile(io.BytesIO(z.content)) as archive:
            assert len(archive.namelist()) == 2 * len(world.pose_ids)
        assert http.delete(f"{base}/generations/{gid}").status_code == 204
    assert [k for k in _keys(world) if f"/{gid}/" in k] == []
