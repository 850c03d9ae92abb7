"""DELETE /generations/{id} on the default (local) store: owner only, refused while active, rows
first and then the files, and the owner's stored-bytes count given back."""

from __future__ import annotations

from api_helpers import Api, Keys, claim_one, problem_of, write_pose
from sqlalchemy import Engine, func, select

from posegen import queue
from posegen.config import Settings
from posegen.db.models import GeneratedPose, GenerationEvent, UserGenerationStats
from posegen.storage.base import generation_folder


def _result_bytes(engine: Engine, user_id: int) -> int:
    with engine.connect() as conn:
        value = conn.execute(
            select(UserGenerationStats.result_bytes).where(UserGenerationStats.user_id == user_id)
        ).scalar_one()
    return int(value)


def test_delete_generation(
    api: Api, keys: Keys, library: None, engine: Engine, settings: Settings
) -> None:
    pid = api("POST", "/projects", key=keys.user, json={"name": "p"}).json()["id"]
    body = {"projectId": pid, "poseIds": [1], "variations": 2}
    keep = api("POST", "/generations", key=keys.user, json=body).json()["id"]
    gid = api("POST", "/generations", key=keys.user, json=body).json()["id"]
    problem_of(api("DELETE", f"/generations/{gid}", key=keys.user), 409)  # pending
    for _ in range(2):
        job = claim_one(engine, settings)
        assert problem_of(api("DELETE", f"/generations/{job.id}", key=keys.user), 409)["kind"] == (
            "generation-active"
        )
        write_pose(engine, settings, job, 1, 0)
        write_pose(engine, settings, job, 1, 1)
        queue.finish(engine, job.id, job.lease_token)
    folder = settings.effective_results_dir / generation_folder(gid)
    assert len(list(folder.iterdir())) == 4
    before = _result_bytes(engine, keys.user_id)
    assert before > 0

    # Another user (and an admin: deletion is the owner's) cannot tell it exists.
    problem_of(api("DELETE", f"/generations/{gid}", key=keys.other), 404)
    problem_of(api("DELETE", f"/generations/{gid}", key=keys.admin), 404)
    assert api("DELETE", f"/generations/{gid}", key=keys.user).status_code == 204

    assert not folder.exists()
    assert (settings.effective_results_dir / generation_folder(keep)).is_dir()
    problem_of(api("GET", f"/generations/{gid}", key=keys.user), 404)
    with engine.connect() as conn:
        for table, column in (
            (GeneratedPose, GeneratedPose.generation_id),
            (GenerationEvent, GenerationEvent.generation_id),
        ):
            count = conn.execute(
                select(func.count()).select_from(table).where(column == gid)
            ).scalar_one()
            assert count == 0
    # The kept generation still counts; the deleted one's bytes were given back.
    assert 0 < _result_bytes(engine, keys.user_id) < before
    assert api("GET", f"/generations/{keep}/archive", key=keys.user).status_code == 200
    problem_of(api("DELETE", f"/generations/{gid}", key=keys.user), 404)
