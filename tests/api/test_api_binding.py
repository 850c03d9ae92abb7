"""Backend binding at the API: a generation records the backend (and model) it was accepted for;
a backend no worker has served recently is refused with ``backend-unavailable``; a backend whose
workers are only paused is queued; results and generations say when they are previews."""

from __future__ import annotations

import datetime as dt

import pytest
from api_helpers import Api, Keys, problem_of, write_pose
from sqlalchemy import Engine, update

from posegen import queue
from posegen.config import Settings
from posegen.db.models import Worker
from posegen.db.types import utcnow
from posegen.worker import registry


@pytest.fixture
def project(api: Api, keys: Keys, library: None) -> int:
    return int(api("POST", "/projects", key=keys.user, json={"name": "p"}).json()["id"])


def _submit(api: Api, keys: Keys, project: int, **extra: object) -> object:
    return api(
        "POST", "/generations", key=keys.user, json={"projectId": project, "poseIds": [1]} | extra
    )


def _seen(engine: Engine, worker_id: str, ago: dt.timedelta, stopped: bool = False) -> None:
    when = utcnow() - ago
    with engine.begin() as conn:
        conn.execute(
            update(Worker)
            .where(Worker.id == worker_id)
            .values(last_seen_at=when, stopped_at=when if stopped else None)
        )


def test_a_backend_no_worker_has_served_is_refused(api: Api, keys: Keys, project: int) -> None:
    body = problem_of(_submit(api, keys, project, backend="comfyui"), 422)
    assert body["kind"] == "backend-unavailable"
    assert "comfyui" in body["detail"] and "POSEGEN_BACKEND=comfyui" in body["detail"]
    # an unknown backend name is a validation error, not a binding question
    assert problem_of(_submit(api, keys, project, backend="dalle"), 422)["kind"] != (
        "backend-unavailable"
    )


def test_a_served_backend_is_bound_and_only_its_workers_claim_it(
    api: Api, keys: Keys, project: int, engine: Engine, settings: Settings
) -> None:
    registry.register(
        engine, "comfy-1", 1, backend="comfyui", model="v1-5-pruned-emaonly.safetensors"
    )
    r = _submit(api, keys, project, backend="comfyui")
    assert r.status_code == 202, r.text
    g = r.json()
    assert (g["backend"], g["model"], g["preview"], g["warning"]) == ("comfyui", None, False, None)
    assert queue.claim(engine, settings, "preview-worker", 5) == []  # posemap worker: not its job
    (job,) = queue.claim(engine, settings, "comfy-1", 5, backend="comfyui", model="m.safetensors")
    assert job.id == g["id"]
    got = api("GET", f"/generations/{g['id']}", key=keys.user).json()
    assert (got["backend"], got["model"], got["preview"]) == ("comfyui", "m.safetensors", False)


def test_paused_or_recently_stopped_workers_still_accept(
    api: Api, keys: Keys, project: int, engine: Engine
) -> None:
    registry.register(engine, "comfy-1", 1, backend="comfyui", model="a.safetensors")
    # the only worker stopped (or went quiet) ten minutes ago: an outage, not a missing backend
    _seen(engine, "comfy-1", dt.timedelta(minutes=10), stopped=True)
    assert _submit(api, keys, project, backend="comfyui").status_code == 202
    # beyond POSEGEN_BACKEND_SEEN_SECONDS (an hour here) it counts as never started
    _seen(engine, "comfy-1", dt.timedelta(hours=2))
    assert problem_of(_submit(api, keys, project, backend="comfyui"), 422)["kind"] == (
        "backend-unavailable"
    )


def test_a_named_model_must_be_served(api: Api, keys: Keys, project: int, engine: Engine) -> None:
    registry.register(engine, "d-1", 1, backend="diffusers", model="sd15-folder")
    body = problem_of(
        _submit(api, keys, project, backend="diffusers", model="sdxl.safetensors"), 422
    )
    assert body["kind"] == "backend-unavailable" and "sd15-folder" in body["detail"]
    r = _submit(api, keys, project, backend="diffusers", model="sd15-folder")
    assert r.status_code == 202 and r.json()["model"] == "sd15-folder"


def test_the_default_backend_is_queued_with_a_warning_until_a_worker_is_seen(
    api: Api, keys: Keys, project: int, engine: Engine
) -> None:
    first = _submit(api, keys, project)
    assert first.status_code == 202
    g = first.json()
    assert (g["backend"], g["preview"]) == ("posemap", True)
    assert "no worker has served posemap" in g["warning"]
    registry.register(engine, "preview-1", 1, backend="posemap", model=None)
    assert _submit(api, keys, project).json()["warning"] is None


def test_results_record_what_made_them_and_say_preview(
    api: Api, keys: Keys, project: int, engine: Engine, settings: Settings
) -> None:
    registry.register(engine, "comfy-1", 1, backend="comfyui", model="m.safetensors")
    preview = _submit(api, keys, project).json()["id"]
    real = _submit(api, keys, project, backend="comfyui").json()["id"]
    (pj,) = queue.claim(engine, settings, "w1", 5)
    (rj,) = queue.claim(engine, settings, "w2", 5, backend="comfyui", model="m.safetensors")
    assert (pj.id, rj.id) == (preview, real)
    write_pose(engine, settings, pj, 1, 0)  # a result row without backend (older rows)
    write_pose(engine, settings, rj, 1, 0, backend="comfyui", model="m.safetensors")
    (p,) = api("GET", f"/generations/{preview}/results", key=keys.user).json()
    (m,) = api("GET", f"/generations/{real}/results", key=keys.user).json()
    # an older row without its own backend falls back to its generation's
    assert (p["backend"], p["model"], p["preview"]) == ("posemap", None, True)
    assert (m["backend"], m["model"], m["preview"]) == ("comfyui", "m.safetensors", False)


def test_the_idempotency_hash_of_a_body_without_backend_is_unchanged() -> None:
    """A key replayed across the upgrade that added ``backend``/``model`` still matches."""
    import hashlib
    import json

    from posegen.api.routes.generations import request_hash
    from posegen.api.schemas import GenerationCreate

    body = GenerationCreate.model_validate({"projectId": 1, "poseIds": [1], "variations": 2})
    dumped = body.model_dump(mode="json")
    # the canonical form the hash had before these fields existed
    late = ("backend", "model", "export_formats", "background")
    legacy = {k: v for k, v in dumped.items() if k not in late}
    digest = hashlib.sha256(
        json.dumps(legacy, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert request_hash(body) == digest
    named = GenerationCreate.model_validate(
        {"projectId": 1, "poseIds": [1], "variations": 2, "backend": "comfyui"}
    )
    assert request_hash(named) != digest
    changed = GenerationCreate.model_validate(
        {"projectId": 1, "poseIds": [1], "variations": 2, "background": {"mode": "blur"}}
    )
    assert request_hash(changed) != digest
