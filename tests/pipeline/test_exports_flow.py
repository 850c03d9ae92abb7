"""Exports made by workers: with each pose (in the pose's own write) and on demand as follow-up
tasks of the queue; idempotent re-export; the generation's event stream carries the tasks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline_world import World  # type: ignore[import-not-found]
from sqlalchemy import func, select

from posegen import exporting
from posegen.db.models import (
    GeneratedPose,
    GenerationEvent,
    GenerationTask,
    PoseStatus,
    ResultExport,
)
from posegen.storage import make_storage


def _exports(world: World, gid: int) -> dict[tuple[int, str], tuple[str, int, int, int]]:
    with world.engine.connect() as conn:
        return {
            (int(r.result_id), r.format): (r.path, r.bytes, r.width, r.height)
            for r in conn.execute(
                select(
                    ResultExport.result_id,
                    ResultExport.format,
                    ResultExport.path,
                    ResultExport.bytes,
                    ResultExport.width,
                    ResultExport.height,
                ).where(ResultExport.generation_id == gid)
            )
        }


def _completed(world: World, gid: int) -> list[int]:
    with world.engine.connect() as conn:
        return [
            int(i)
            for i in conn.execute(
                select(GeneratedPose.id).where(
                    GeneratedPose.generation_id == gid,
                    GeneratedPose.status == PoseStatus.COMPLETED,
                )
            ).scalars()
        ]


def _kinds(world: World, gid: int) -> list[str]:
    with world.engine.connect() as conn:
        return [
            str(k)
            for k in conn.execute(
                select(GenerationEvent.kind)
                .where(GenerationEvent.generation_id == gid)
                .order_by(GenerationEvent.id)
            ).scalars()
        ]


def test_exports_with_each_pose_then_on_demand_once(world: World) -> None:
    formats = sorted(exporting.formats(world.settings))
    first, second = formats[0], formats[1]
    gid = world.submit(export_formats=(first,))
    world.run_pipeline()
    results = _completed(world, gid)
    assert len(results) == 6
    made = _exports(world, gid)
    # Every pose came with its export, written with it; nothing in another format.
    assert set(made) == {(r, first) for r in results}
    store = make_storage(world.settings)
    for path, size, width, height in made.values():
        assert len(store.read(path)) == size and width > 0 and height > 0

    # On demand: the format every result has is a no-op; the other is one task.
    asked = exporting.request(world.engine, world.settings, gid, [first, second, second])
    assert [(r.format, r.status, r.queued) for r in asked] == [
        (first, "completed", False),
        (second, "pending", True),
    ]
    again = exporting.request(world.engine, world.settings, gid, [second])
    assert [(r.format, r.status, r.queued) for r in again] == [(second, "pending", False)]
    world.run_pipeline()
    made = _exports(world, gid)
    assert set(made) == {(r, f) for r in results for f in (first, second)}
    with world.engine.connect() as conn:
        tasks = conn.execute(
            select(GenerationTask.task_key, GenerationTask.status, GenerationTask.attempts)
        ).all()
    assert [(t.task_key, str(t.status), t.attempts) for t in tasks] == [
        (f"export:{second}", "completed", 1)
    ]
    kinds = _kinds(world, gid)
    tail = kinds[kinds.index("completed") + 1 :]
    assert tail == ["task_queued", "task_started", "task_completed", "tasks_settled"]

    # Asked again once it exists: nothing queued, no event.
    assert [r.queued for r in exporting.request(world.engine, world.settings, gid, [second])] == [
        False
    ]
    assert len(_kinds(world, gid)) == len(kinds)
    with world.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(GenerationTask)).scalar_one() == 1


def test_cli_export_queues_waits_and_downloads(
    world: World, cli_env: dict[str, str], tmp_path: Path
) -> None:
    gid = world.submit()
    world.run_pipeline()
    formats = sorted(exporting.formats(world.settings))[:2]
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "posegen", "export", str(gid), "--formats", ",".join(formats)]
    done = subprocess.run(
        [*cmd, "-o", str(out), "--json"], env=cli_env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert sorted(str(Path(f).relative_to(out)) for f in report["files"]) == files
    assert len(files) == 12 and {f.split("/")[0] for f in files} == set(formats)
    assert set(_exports(world, gid)) == {(r, f) for r in _completed(world, gid) for f in formats}
    # A format it does not know: one line naming it (and the known ones), a failing exit.
    bad = subprocess.run(
        [*cmd[:4], str(gid), "--formats", "nope"], env=cli_env, capture_output=True, text=True
    )
    assert bad.returncode == 1 and bad.stderr.startswith("error: unknown export formats: nope")
