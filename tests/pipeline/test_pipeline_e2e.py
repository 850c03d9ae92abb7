"""The pipeline end to end: real queue, real in-process worker, posemap, files on disk.

Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fake_comfyui import FakeComfyUI  # type: ignore[import-not-found]
from PIL import Image
from pipeline_world import World  # type: ignore[import-not-found]
from sqlalchemy import select
from sqlalchemy.orm import Session

from posegen import failures, operations, projects, queue
from posegen.db.models import (
    GeneratedPose,
    GenerationEvent,
    GenerationStatus,
    PoseGeneration,
    PoseLibrary,
    UserGenerationStats,
)
from posegen.exceptions import GeneratorError
from posegen.generators import GenerateRequest, GenerateResult
from posegen.generators.posemap import PREVIEW_NOTE, PosemapGenerator
from posegen.worker import Worker
from posegen.worker.job_inputs import pick_seed
from posegen.worker.pipeline import PipelineHandler, make_handler


def _generation(world: World, gid: int) -> Any:
    with world.engine.connect() as conn:
        return conn.execute(select(PoseGeneration).where(PoseGeneration.id == gid)).one()


def _rows(world: World, gid: int) -> list[GeneratedPose]:
    with Session(world.engine) as session:
        return list(
            session.scalars(
                select(GeneratedPose)
                .where(GeneratedPose.generation_id == gid)
                .order_by(GeneratedPose.id)
            )
        )


def _pose_names(world: World) -> dict[int, tuple[str, str]]:
    with world.engine.connect() as conn:
        return {
            r.id: (r.name, r.description)
            for r in conn.execute(select(PoseLibrary.id, PoseLibrary.name, PoseLibrary.description))
        }


def test_generations_produce_exactly_the_expected_files(world: World) -> None:
    plan = [
        (world.submit(), world.pose_ids, 2, (320, 256), (320, 256)),
        (world.submit(width=512, height=512), world.pose_ids, 2, (512, 512), (400, 400)),
        (world.submit([], variations=3, width=640, height=320), [None], 3, (640, 320), (400, 200)),
    ]
    world.run_pipeline()

    root = world.settings.effective_results_dir
    names = _pose_names(world)
    expected_files: set[str] = set()
    for gid, poses, variations, size, thumb in plan:
        gen = _generation(world, gid)
        assert gen.status == "completed" and gen.poses_completed == len(poses) * variations
        assert gen.poses_failed == 0 and gen.attempts == 1
        rows = _rows(world, gid)
        keys = [f"p{p}-v{i}" if p else f"text-v{i}" for p in poses for i in range(variations)]
        assert sorted(r.variation_key for r in rows) == sorted(keys)
        for row in rows:
            assert row.status == "completed" and row.error_kind is None
            with Image.open(root / row.image_path) as img:
                assert img.format == "PNG" and img.size == size
            with Image.open(root / row.thumbnail_path) as t:
                assert t.format == "JPEG" and t.size == thumb
            assert row.seed == pick_seed(None, gid, row.variation_key, row.variation_index)
            if row.pose_id is None:
                assert row.prompt_used == "studio photo"
            else:
                name, description = names[row.pose_id]
                assert row.prompt_used == f"studio photo, {name}, {description}"
            meta = row.meta
            assert meta["backend"] == "posemap" and meta["preview"] is True
            assert meta["note"] == PREVIEW_NOTE
            assert meta["subject"] is True and meta["poseMap"] is (row.pose_id is not None)
            assert (meta["width"], meta["height"]) == size
            # The quota counts exactly what the files take.
            on_disk_bytes = (root / row.image_path).stat().st_size
            assert row.bytes == on_disk_bytes + (root / row.thumbnail_path).stat().st_size
            expected_files |= {row.image_path, row.thumbnail_path}
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert on_disk == expected_files
    with Session(world.engine) as session:
        stats = session.get(UserGenerationStats, world.user_id)
    assert stats is not None
    assert stats.result_bytes == sum((root / f).stat().st_size for f in expected_files)
    assert stats.reserved_bytes == 0  # every generation ended and gave its estimate back
    # Variations of one pose differ (their seeds differ); each file is distinct.
    assert len({(root / f).read_bytes() for f in expected_files}) == len(expected_files)


class _FailsFor(PosemapGenerator):
    """Posemap, except for prompts naming one pose: a permanent refusal (like a content filter)."""

    def __init__(self, needle: str) -> None:
        self.needle = needle

    def generate(self, req: GenerateRequest) -> GenerateResult:
        if self.needle in req.prompt:
            raise GeneratorError("refused by the content filter", transient=False, kind="refused")
        return super().generate(req)


def test_permanent_failures_are_recorded_and_the_generation_is_partial(world: World) -> None:
    blocked = world.add_pose("Blocked Map", "http://169.254.169.254/latest/map.png")
    not_image = world.add_pose("Text Map", f"{world.origin}/text/map.png")
    refused_name = _pose_names(world)[world.pose_ids[1]][0]
    gid = world.submit([world.pose_ids[0], blocked, not_image, world.pose_ids[1]])
    world.run_pipeline(PipelineHandler(world.settings, generator=_FailsFor(refused_name)))

    gen = _generation(world, gid)
    assert gen.status == "partial" and (gen.poses_completed, gen.poses_failed) == (2, 6)
    by_pose: dict[int, set[tuple[str, str | None]]] = {}
    for row in _rows(world, gid):
        by_pose.setdefault(row.pose_id, set()).add((row.status, row.error_kind))
        if row.status == "failed":
            assert row.image_path is None and row.error_message
    assert by_pose == {
        world.pose_ids[0]: {("completed", None)},
        blocked: {("failed", "blocked-address")},
        not_image: {("failed", "not-an-image")},
        world.pose_ids[1]: {("failed", "refused")},
    }
    files = [p for p in world.settings.effective_results_dir.rglob("*.png")]
    assert len(files) == 2


class _Flaky(PosemapGenerator):
    """Posemap that loses its backend once, after ``fail_after`` images."""

    def __init__(self, fail_after: int) -> None:
        self.fail_after = fail_after
        self.calls: Counter[int] = Counter()
        self.failed = False
        self.lock = threading.Lock()

    def generate_batch(self, reqs: Sequence[GenerateRequest]) -> list[GenerateResult]:
        with self.lock:
            if not self.failed and sum(self.calls.values()) >= self.fail_after:
                self.failed = True
                raise GeneratorError("backend unreachable", transient=True, kind="unreachable")
            for r in reqs:
                self.calls[r.seed] += 1
        return super().generate_batch(reqs)


def test_transient_failure_retries_without_redoing_finished_poses(world: World) -> None:
    gid = world.submit()
    flaky = _Flaky(fail_after=3)
    world.run_pipeline(PipelineHandler(world.settings, generator=flaky))

    gen = _generation(world, gid)
    assert gen.status == "completed" and gen.attempts == 2 and gen.poses_completed == 6
    assert flaky.failed
    # Every variation was generated exactly once: the 3 done before the failure were skipped.
    assert sorted(flaky.calls.values()) == [1] * 6
    assert len(_rows(world, gid)) == 6
    with world.engine.connect() as conn:
        kinds = list(
            conn.execute(
                select(GenerationEvent.kind)
                .where(GenerationEvent.generation_id == gid)
                .order_by(GenerationEvent.id)
            ).scalars()
        )
    assert "retrying" in kinds and kinds[-1] == "completed"


def test_unreachable_comfyui_pauses_the_worker_and_spends_no_attempt(world: World) -> None:
    server = FakeComfyUI()  # not started: nothing listens on its port yet
    world.settings = world.settings.model_copy(
        update={
            "backend": "comfyui",
            "comfyui_url": server.url,
            "max_attempts": 2,
            "breaker_probe_min_seconds": 0.05,
            "breaker_probe_max_seconds": 0.2,
        }
    )
    gid = world.submit()
    handler = make_handler(world.settings)
    worker = Worker(world.settings, world.engine, handler, concurrency=2)
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while not any(w.paused for w in operations.workers(world.engine, 60)):
            assert time.monotonic() < deadline, "the worker did not pause"
            time.sleep(0.05)
        (info,) = operations.workers(world.engine, 60)
        assert (info.paused_reason or "").startswith("comfyui-unreachable: cannot reach ComfyUI")
        time.sleep(1.0)  # many probes, far past max_attempts: still nothing spent
        gen = _generation(world, gid)
        assert gen.status == "pending" and gen.attempts == 0
        with server:
            while _generation(world, gid).status != "completed":
                assert time.monotonic() < deadline + 30, "the generation did not complete"
                time.sleep(0.05)
    finally:
        worker.stop()
        runner.join(30)
        close = getattr(handler, "close", None)
        if callable(close):
            close()
    gen = _generation(world, gid)
    assert gen.attempts == 1 and gen.poses_completed == 6 and len(_rows(world, gid)) == 6


def test_a_rejected_workflow_fails_the_generation_once(world: World, tmp_path: Path) -> None:
    workflow = json.loads(
        (
            Path(__file__).parents[2] / "src/posegen/generators/workflows/comfyui_default.json"
        ).read_text()
    )
    # Out of range for ImageAddNoise (max 1.0): the server validates it, /object_info cannot.
    workflow["13"] = {
        "class_type": "ImageAddNoise",
        "inputs": {"image": ["11", 0], "seed": 1, "strength": 7.5},
    }
    workflow["12"]["inputs"]["images"] = ["13", 0]
    path = tmp_path / "noisy.json"
    path.write_text(json.dumps(workflow))
    with FakeComfyUI() as server:
        world.settings = world.settings.model_copy(
            update={"backend": "comfyui", "comfyui_url": server.url, "comfyui_workflow_path": path}
        )
        gid = world.submit()  # 3 poses x 2 variations
        world.run_pipeline()
    gen = _generation(world, gid)
    assert gen.status == "failed" and gen.error_kind == "workflow-invalid" and gen.attempts == 1
    # The owner reads a sentence; the nodes, with ComfyUI's message and details, are for admins.
    assert gen.error_message == failures.SENTENCES["workflow-invalid"]
    assert "node 13 (ImageAddNoise): Value 7.5 bigger than max of 1.0: strength" in (
        gen.error_detail
    )
    # Once for the generation, not once per pose: one prompt, one subject and one map uploaded.
    assert server.calls["prompt"] == 1 and server.calls["upload"] == 2
    assert _rows(world, gid) == []


def test_subject_that_cannot_be_fetched_fails_the_generation(world: World) -> None:
    project = projects.create(world.engine, world.user_id, "bad", "http://10.1.2.3/subject.png")
    world.project_id = project.id
    gid = world.submit()
    world.run_pipeline()

    gen = _generation(world, gid)
    assert gen.status == "failed" and gen.error_kind == "subject-blocked-address"
    assert gen.attempts == 1 and _rows(world, gid) == []
    assert not Path(world.settings.effective_results_dir).exists() or not any(
        Path(world.settings.effective_results_dir).rglob("*.png")
    )


class _Gated(PosemapGenerator):
    """Posemap that holds its second image until the test lets it go."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def generate(self, req: GenerateRequest) -> GenerateResult:
        self.calls += 1
        if self.calls == 2:
            self.entered.set()
            self.release.wait(30)
        return super().generate(req)


def test_cancel_stops_between_poses(world: World) -> None:
    gid = world.submit()
    gated = _Gated()
    handler = PipelineHandler(world.settings, generator=gated)
    runner = threading.Thread(target=world.run_worker, args=(handler,))
    runner.start()
    assert gated.entered.wait(30)
    assert queue.cancel(world.engine, gid, None) == GenerationStatus.PROCESSING
    time.sleep(world.settings.lease_seconds / 3 + 0.5)  # a heartbeat brings the cancel flag
    gated.release.set()
    runner.join(60)
    handler.close()

    gen = _generation(world, gid)
    assert gen.status == "cancelled"
    # The pose being made when the cancel came is kept; nothing after it was started.
    assert gated.calls == 2 and len(_rows(world, gid)) == 2


def test_comfyui_backend_through_the_worker(world: World) -> None:
    with FakeComfyUI() as server:
        world.settings = world.settings.model_copy(
            update={"backend": "comfyui", "comfyui_url": server.url}
        )
        gid = world.submit(world.pose_ids[:2], width=256, height=192)
        world.run_pipeline()
    gen = _generation(world, gid)
    assert gen.status == "completed" and gen.poses_completed == 4
    # Per image: the subject and the pose map uploaded, one prompt queued, one output fetched.
    assert server.calls["prompt"] == 4 and server.calls["view"] == 4
    for workflow, row in zip(server.prompts, _rows(world, gid), strict=True):
        sampler = next(n for n in workflow.values() if n["class_type"] == "KSampler")
        assert sampler["inputs"]["seed"] == row.seed
        assert row.meta is not None and row.meta["backend"] == "comfyui"
        with Image.open(world.settings.effective_results_dir / row.image_path) as img:
            assert img.size == (256, 192)


def test_diffusers_backend_through_the_worker(world: World, tiny_sd15: tuple[Path, Path]) -> None:
    model, controlnet = tiny_sd15
    world.settings = world.settings.model_copy(
        update={
            "backend": "diffusers",
            "diffusers_model_path": model,
            "diffusers_controlnet_path": controlnet,
            "diffusers_steps": 2,
            "diffusers_device": "cpu",
            "diffusers_max_batch": 2,
        }
    )
    gid = world.submit(world.pose_ids[:2], variations=3, width=64, height=64)
    world.run_pipeline()

    gen = _generation(world, gid)
    assert gen.status == "completed" and gen.poses_completed == 6
    rows = _rows(world, gid)
    root = world.settings.effective_results_dir
    for row in rows:
        assert row.meta is not None
        assert row.meta["backend"] == "diffusers" and row.meta["mode"] == "img2img"
        # Three variations at max_batch 2: a batch of two, then one.
        assert row.meta["batch"] == (1 if row.variation_index == 2 else 2)
        with Image.open(root / row.image_path) as img:
            assert img.size == (64, 64)
    assert len({(root / r.image_path).read_bytes() for r in rows}) == 6
