"""Retention and the orphan sweep on the local store, on SQLite and PostgreSQL: what
``posegen prune`` (the real command) deletes, what it keeps (kept generations, referenced
uploads, fresh files), ``--dry-run`` deleting nothing, and a worker's periodic prune."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from pipeline_world import World  # type: ignore[import-not-found]
from sqlalchemy import func, insert, select, update

from posegen import accounts, retention, uploads
from posegen.api.app import create_app
from posegen.db.models import (
    GeneratedPose,
    GenerationEvent,
    PoseGeneration,
    ResultExport,
    Upload,
    User,
    UserGenerationStats,
)
from posegen.db.types import utcnow
from posegen.storage import LocalStorage
from posegen.worker import Worker
from posegen.worker.noop import make_handler as noop_handler

sys.path.insert(0, str(Path(__file__).parents[1] / "api"))
from live_server import live_server  # type: ignore[import-not-found]

DAY = dt.timedelta(days=1)
RETENTION = {
    "POSEGEN_RETENTION_EVENTS_DAYS": "7",
    "POSEGEN_RETENTION_RESULTS_DAYS": "30",
    "POSEGEN_RETENTION_UPLOADS_DAYS": "10",
}


def _png(colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buf, format="PNG")
    return buf.getvalue()


def _age(world: World, gid: int, days: float) -> None:
    """Make a finished generation (and its events) look ``days`` old."""
    then = utcnow() - days * DAY
    with world.engine.begin() as conn:
        conn.execute(
            update(PoseGeneration)
            .where(PoseGeneration.id == gid)
            .values(created_at=then, completed_at=then)
        )
        conn.execute(
            update(GenerationEvent)
            .where(GenerationEvent.generation_id == gid)
            .values(created_at=then)
        )


def _count(world: World, model: Any, *where: Any) -> int:
    with world.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


def _prune(cli_env: dict[str, str], *args: str) -> dict[str, Any]:
    env = {**cli_env, **RETENTION}
    done = subprocess.run(
        [sys.executable, "-m", "posegen", "prune", "--json", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def test_prune_deletes_what_the_retention_lets_go_and_keeps_the_rest(
    world: World, cli_env: dict[str, str]
) -> None:
    old_kept, old, recent = (world.submit(variations=1) for _ in range(3))
    world.run_pipeline()
    for gid in (old_kept, old):
        _age(world, gid, 40)
    store = LocalStorage(world.settings)
    with world.engine.connect() as conn:
        paths = {
            gid: [
                p
                for r in conn.execute(
                    select(GeneratedPose.image_path, GeneratedPose.thumbnail_path).where(
                        GeneratedPose.generation_id == gid
                    )
                )
                for p in r
            ]
            for gid in (old_kept, old, recent)
        }
        old_bytes = conn.execute(
            select(func.sum(GeneratedPose.bytes)).where(GeneratedPose.generation_id == old)
        ).scalar_one()
        stats_before = conn.execute(
            select(UserGenerationStats.result_bytes).where(
                UserGenerationStats.user_id == world.user_id
            )
        ).scalar_one()
        email = conn.execute(select(User.email).where(User.id == world.user_id)).scalar_one()
    assert all(paths.values()) and old_bytes

    # Uploads: an old one nobody uses (goes), the project's old subject (stays: referenced),
    # a new one nobody uses (stays: too young).
    unused_old = uploads.store(world.engine, world.settings, world.user_id, _png((1, 2, 3)))
    unused_new = uploads.store(world.engine, world.settings, world.user_id, _png((4, 5, 6)))
    with world.engine.begin() as conn:
        conn.execute(
            update(Upload).where(Upload.id != unused_new.id).values(created_at=utcnow() - 20 * DAY)
        )

    # The owner keeps one of the old generations, through the API; nobody else can.
    key = accounts.issue_key(world.engine, email).api_key
    stranger = accounts.create_user(world.engine, "Eve", "eve@example.com").api_key
    with live_server(create_app(world.settings, world.engine), world.settings) as (base, _):
        resp = httpx.put(
            f"{base}/generations/{old_kept}/keep", headers={"Authorization": f"Bearer {stranger}"}
        )
        assert resp.status_code == 404
        assert resp.headers["content-type"] == "application/problem+json"
        for method, kept in (("PUT", True), ("DELETE", False), ("PUT", True)):
            resp = httpx.request(
                method,
                f"{base}/generations/{old_kept}/keep",
                headers={"Authorization": f"Bearer {key}"},
            )
            assert resp.status_code == 200, resp.text
            assert resp.json()["kept"] is kept
        assert (
            httpx.get(
                f"{base}/generations/{old}", headers={"Authorization": f"Bearer {key}"}
            ).json()["kept"]
            is False
        )

    old_events = _count(world, GenerationEvent, GenerationEvent.generation_id.in_([old_kept, old]))
    recent_events = _count(world, GenerationEvent, GenerationEvent.generation_id == recent)
    assert old_events and recent_events

    dry = _prune(cli_env, "--dry-run")
    assert dry["dryRun"] is True
    assert dry["events"]["count"] == old_events
    assert dry["generations"] == {"count": 1, "bytes": old_bytes}
    assert dry["uploads"] == {"count": 1, "bytes": unused_old.bytes}
    # Nothing went.
    assert _count(world, GenerationEvent) == old_events + recent_events
    assert _count(world, PoseGeneration) == 3
    assert all(store.read(p) for ps in paths.values() for p in ps)
    assert uploads.get(world.engine, unused_old.id, world.user_id)

    done = _prune(cli_env)
    assert done["dryRun"] is False
    assert done["events"]["count"] == old_events
    assert done["generations"] == {"count": 1, "bytes": old_bytes}
    assert done["uploads"] == {"count": 1, "bytes": unused_old.bytes}
    assert done["errors"] == []

    with world.engine.connect() as conn:
        left = set(conn.execute(select(PoseGeneration.id)).scalars())
        stats_after = conn.execute(
            select(UserGenerationStats.result_bytes).where(
                UserGenerationStats.user_id == world.user_id
            )
        ).scalar_one()
    assert left == {old_kept, recent}
    assert stats_after == stats_before - old_bytes  # the owner's quota got the bytes back
    root = world.settings.effective_results_dir
    for p in paths[old]:
        assert not (root / p).exists()
    for gid in (old_kept, recent):
        assert all(store.read(p) for p in paths[gid])  # kept, or too young: files stay
    assert _count(world, GenerationEvent, GenerationEvent.generation_id == old_kept) == 0
    assert _count(world, GenerationEvent, GenerationEvent.generation_id == recent) == recent_events
    uploads_dir = world.settings.effective_uploads_dir
    assert not (uploads_dir / unused_old.relpath).exists()
    assert _count(world, Upload, Upload.id == unused_old.id) == 0
    assert (uploads_dir / unused_new.relpath).is_file()
    # The project's subject is old too, but referenced: it stays and the generation reads it.
    assert _count(world, Upload) == 2

    again = _prune(cli_env)  # nothing left to do
    assert again["generations"]["count"] == again["events"]["count"] == 0
    assert again["uploads"]["count"] == 0


def test_the_sweep_deletes_old_orphans_and_never_a_fresh_file_or_a_named_one(
    world: World,
) -> None:
    gid = world.submit(variations=1)
    world.run_pipeline()
    store = LocalStorage(world.settings)
    root = world.settings.effective_results_dir
    with world.engine.connect() as conn:
        named = [
            p
            for r in conn.execute(
                select(GeneratedPose.image_path, GeneratedPose.thumbnail_path).where(
                    GeneratedPose.generation_id == gid
                )
            )
            for p in r
        ]
    # An export beside the result, named by its row; another whose row never committed.
    with world.engine.begin() as conn:
        rid, key = conn.execute(
            select(GeneratedPose.id, GeneratedPose.variation_key).where(
                GeneratedPose.generation_id == gid
            )
        ).first()
        export = store.save_export(gid, key, "instagram_feed", "jpg", b"exported")
        conn.execute(
            insert(ResultExport).values(
                result_id=rid,
                generation_id=gid,
                format="instagram_feed",
                path=export,
                bytes=8,
                width=1,
                height=1,
                content_type="image/jpeg",
            )
        )
    lost_export = store.save_export(gid, key, "tiktok", "jpg", b"lost")
    named.append(export)
    # A worker's crash between the write and its row: files of a variation no row names (in a
    # generation that exists, and in one whose row never committed), and a half-written temp.
    crashed = store.save_result(gid, "p999-v0", _png((9, 9, 9)))
    never = store.save_result(gid + 1000, "p1-v0", _png((8, 8, 8)))
    fresh = store.save_result(gid, "p998-v0", _png((7, 7, 7)))
    temp = root / Path(crashed.image).parent / ".p997-v0.png.0123abcd.tmp"
    temp.write_bytes(b"half")
    # An upload file whose row never committed, and one a stranger put there by hand.
    ups = world.settings.effective_uploads_dir
    lost_upload = ups / f"{world.user_id}/ab/{'ab' * 32}.png"
    lost_upload.parent.mkdir(parents=True, exist_ok=True)
    lost_upload.write_bytes(_png((1, 1, 1)))
    unknown = root / "README.txt"
    unknown.write_text("not posegen's")

    old = time.time() - 2 * world.settings.orphan_grace_seconds
    for rel in [
        *named,
        lost_export,
        crashed.image,
        crashed.thumbnail,
        never.image,
        never.thumbnail,
    ]:
        os.utime(root / rel, (old, old))
    for path in (temp, lost_upload, unknown):
        os.utime(path, (old, old))
    subject = [p for p in ups.rglob("*.png") if p != lost_upload]
    assert subject
    for path in subject:
        os.utime(path, (old, old))

    dry = retention.prune(world.engine, world.settings, dry_run=True)
    assert dry.orphans["results"].count == 6 and dry.orphans["uploads"].count == 1
    assert (root / crashed.image).exists() and lost_upload.exists()

    report = retention.prune(world.engine, world.settings)
    assert report.errors == []
    # Two crashed, two never named, the export without a row, the temp.
    assert report.orphans["results"].count == 6
    assert report.orphans["uploads"].count == 1
    assert report.orphans["results"].bytes == crashed.bytes + never.bytes + 4 + 4
    for rel in (crashed.image, crashed.thumbnail, never.image, never.thumbnail, lost_export):
        assert not (root / rel).exists()
    assert not temp.exists() and not lost_upload.exists()
    # Fresh orphans wait out the grace (a row may still be coming); named files and files the
    # sweep cannot tie to a table are never touched.
    assert (root / fresh.image).exists() and (root / fresh.thumbnail).exists()
    assert all((root / p).is_file() for p in named)
    assert unknown.exists()
    assert all(p.exists() for p in subject)


def test_a_worker_prunes_periodically(world: World) -> None:
    root = world.settings.effective_results_dir
    store = LocalStorage(world.settings)
    orphan = store.save_result(424242, "p1-v0", _png((5, 5, 5)))
    old = time.time() - 2 * world.settings.orphan_grace_seconds
    for rel in (orphan.image, orphan.thumbnail):
        os.utime(root / rel, (old, old))
    tuned = world.settings.model_copy(update={"prune_interval_seconds": 0.2})
    worker = Worker(tuned, world.engine, noop_handler(tuned), concurrency=1)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while (root / orphan.image).exists() or (root / orphan.thumbnail).exists():
            assert time.monotonic() < deadline, "the worker never pruned"
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(30)


def test_one_prune_at_a_time(world: World) -> None:
    from posegen.retention.turn import my_turn

    with my_turn(world.engine, world.settings) as first:
        assert first
        with my_turn(world.engine, world.settings) as second:
            assert not second  # another worker's periodic prune skips this round
    with my_turn(world.engine, world.settings) as again:
        assert again


def test_small_batches_walk_each_table_by_id_and_keep_what_they_must(world: World) -> None:
    # Ids follow time (the walk stops at the first row past the cutoff): the old ones first.
    ids = [world.submit(variations=1) for _ in range(4)]
    world.run_worker(noop_handler(world.settings))
    for gid in ids:
        _age(world, gid, 40)
    ids.append(world.submit(variations=1))
    world.run_worker(noop_handler(world.settings))
    retention.set_kept(world.engine, ids[1], world.user_id, True)
    newest_events = _count(world, GenerationEvent, GenerationEvent.generation_id == ids[4])
    old_events = _count(world, GenerationEvent, GenerationEvent.generation_id.in_(ids[:4]))
    assert newest_events and old_events > 2  # more than one batch of 2
    settings = world.settings.model_copy(
        update={
            "prune_batch_size": 2,
            "retention_events_days": 7,
            "retention_results_days": 30,
        }
    )
    report = retention.prune(world.engine, settings, orphans_too=False)
    assert report.events.count == old_events
    assert report.generations.count == 3
    with world.engine.connect() as conn:
        left = set(conn.execute(select(PoseGeneration.id)).scalars())
    assert left == {ids[1], ids[4]}  # kept, and too young
    assert _count(world, GenerationEvent, GenerationEvent.generation_id == ids[1]) == 0
    assert _count(world, GenerationEvent, GenerationEvent.generation_id == ids[4]) == newest_events
