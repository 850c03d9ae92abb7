"""Backend binding: a generation is claimed only by a worker serving the backend (and model) it
was accepted for. Reproduces the bug where a ComfyUI generation that failed transiently was
later claimed by a preview (posemap) worker and reported completed with skeleton previews."""

from __future__ import annotations

import subprocess
import sys

from queue_helpers import row
from sqlalchemy import select

from posegen import queue
from posegen.db.models import GeneratedPose, GenerationStatus, Worker
from posegen.worker import Worker as QueueWorker
from posegen.worker import noop

S = GenerationStatus


def test_a_posemap_claim_never_takes_a_comfyui_generation(engine, settings, owner):
    comfy = queue.submit(engine, settings, owner.request(backend="comfyui")).generation_id
    preview = queue.submit(engine, settings, owner.request()).generation_id
    assert (row(engine, comfy).backend, row(engine, preview).backend) == ("comfyui", "posemap")

    jobs = queue.claim(engine, settings, "preview-worker", 10)  # settings.backend = posemap
    assert [j.id for j in jobs] == [preview]
    assert queue.claim(engine, settings, "preview-worker", 10, backend="posemap") == []
    assert row(engine, comfy).status == S.PENDING and row(engine, comfy).attempts == 0
    assert queue.pending_exists(engine, "posemap", None) is False
    assert queue.pending_exists(engine, "comfyui", "any.safetensors") is True


def test_a_transient_failure_goes_back_to_its_own_backend(engine, tuned, owner):
    settings = tuned(retry_backoff_base_seconds=0)
    gen = queue.submit(engine, settings, owner.request(backend="comfyui")).generation_id
    (job,) = queue.claim(engine, settings, "comfy-1", 1, backend="comfyui", model="sd15.ckpt")
    assert (job.backend, job.model) == ("comfyui", "sd15.ckpt")
    # the ComfyUI server went away: the attempt fails transiently and the row is pending again
    queue.fail_transient(
        engine, settings, job.id, job.lease_token, "backend-unreachable", "connection refused"
    )
    assert row(engine, gen).status == S.PENDING
    # the preview worker, and a ComfyUI worker with another checkpoint, leave it alone
    assert queue.claim(engine, settings, "preview", 5, backend="posemap") == []
    assert queue.claim(engine, settings, "comfy-xl", 5, backend="comfyui", model="xl.ckpt") == []
    # the first claim pinned the model: the retry runs on the checkpoint the first attempt used
    assert row(engine, gen).model == "sd15.ckpt"
    (again,) = queue.claim(engine, settings, "comfy-2", 5, backend="comfyui", model="sd15.ckpt")
    assert again.id == gen and again.attempts == 2


def test_a_named_model_binds_from_submit(engine, settings, owner):
    gen = queue.submit(
        engine, settings, owner.request(backend="diffusers", model="sdxl-base")
    ).generation_id
    assert queue.claim(engine, settings, "w1", 5, backend="diffusers", model="sd15") == []
    (job,) = queue.claim(engine, settings, "w2", 5, backend="diffusers", model="sdxl-base")
    assert job.id == gen


def test_bulk_submit_binds_too(engine, settings, owner):
    ids = queue.submit_many(
        engine, settings, [owner.request(backend="comfyui"), owner.request()] * 3
    )
    assert [row(engine, i).backend for i in ids] == ["comfyui", "posemap"] * 3
    assert {j.id for j in queue.claim(engine, settings, "w", 10)} == set(ids[1::2])


def test_a_real_preview_worker_leaves_comfyui_work_alone(engine, settings, owner, cli_env):
    """The bug as it happened, with the real ``posegen worker`` process (posemap backend)."""
    comfy = queue.submit(engine, settings, owner.request(backend="comfyui")).generation_id
    preview = queue.submit(engine, settings, owner.request()).generation_id
    proc = subprocess.run(
        [sys.executable, "-m", "posegen", "worker", "--burst", "--concurrency", "2"],
        env={**cli_env, "POSEGEN_BACKEND": "posemap", "POSEGEN_POLL_INTERVAL_SECONDS": "0.1"},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    # burst: it exits once nothing it can serve is left, though the ComfyUI job still waits
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert row(engine, preview).status == S.COMPLETED
    r = row(engine, comfy)
    assert (r.status, r.attempts, r.leased_by) == (S.PENDING, 0, None)
    with engine.connect() as conn:
        made = conn.execute(
            select(GeneratedPose.generation_id, GeneratedPose.backend, GeneratedPose.model)
        ).all()
        worker = conn.execute(select(Worker.backend, Worker.model)).one()
    assert [tuple(m) for m in made] == [(preview, "posemap", None)]
    assert tuple(worker) == ("posemap", None)


def test_the_worker_loop_claims_with_what_it_serves(engine, settings, owner):
    comfy = queue.submit(engine, settings, owner.request(backend="comfyui")).generation_id
    mine = queue.submit(engine, settings, owner.request(poses=2)).generation_id
    w = QueueWorker(settings, engine, noop.make_handler(settings), concurrency=2, burst=True)
    w.run()
    assert row(engine, mine).status == S.COMPLETED
    assert row(engine, comfy).status == S.PENDING
    # a worker serving comfyui (the no-op handler standing in for the server) drains it
    w2 = QueueWorker(
        settings, engine, noop.make_handler(settings), burst=True, backend="comfyui", model="m"
    )
    w2.run()
    r = row(engine, comfy)
    assert (r.status, r.model) == (S.COMPLETED, "m")
