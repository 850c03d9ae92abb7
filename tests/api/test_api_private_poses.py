"""A user's private poses: made from keypoints or the owner's map upload, usable in the owner's
generations, invisible to everyone else (admins included) everywhere, promotable by an admin.
Both engines."""

from __future__ import annotations

from api_helpers import Api, Keys, claim_one, png, problem_of, write_pose
from sqlalchemy import Engine, delete, select

from posegen import queue
from posegen.config import Settings
from posegen.db.engine import write_transaction
from posegen.db.models import PoseLibrary, Upload, User
from posegen.exceptions import InvalidInput
from posegen.library import create_private_pose
from posegen.worker.job_inputs import load_inputs

POINTS = [[0.5, 0.1 + i * 0.04] for i in range(18)]


def _project(api: Api, key: str) -> int:
    return int(api("POST", "/projects", key=key, json={"name": "p"}).json()["id"])


def _ids(api: Api, key: str, path: str) -> set[int]:
    r = api("GET", path, key=key, params={"limit": 200})
    assert r.status_code == 200, r.text
    return {p["id"] for p in r.json()["items"]}


def test_private_pose_is_the_owners_alone(
    api: Api, keys: Keys, library: None, engine: Engine, settings: Settings
) -> None:
    before = api("GET", "/library/categories", key=keys.admin).json()
    r = api("POST", "/me/poses", key=keys.user, json={"name": " My lunge ", "keypoints": POINTS})
    assert r.status_code == 201, r.text
    pose = r.json()
    pid = pose["id"]
    assert pose["name"] == "My lunge" and pose["isPublic"] is False
    assert pose["keypoints"]["people"][0]["body"][0][:2] == [0.5, 0.1]  # stored canonical
    assert _ids(api, keys.user, "/me/poses") == {pid}
    assert _ids(api, keys.other, "/me/poses") == set()

    # The owner reads it and its map; nobody else finds it anywhere.
    assert api("GET", f"/library/poses/{pid}", key=keys.user).status_code == 200
    owner_map = api("GET", f"/library/poses/{pid}/map", key=keys.user)
    assert owner_map.status_code == 200 and owner_map.content[:4] == b"\x89PNG"
    for key in (keys.other, keys.admin):
        for path in (f"/library/poses/{pid}", f"/library/poses/{pid}/map", f"/me/poses/{pid}"):
            problem_of(api("GET", path, key=key), 404)
        assert pid not in _ids(api, key, "/library/poses")
        problem_of(api("PATCH", f"/me/poses/{pid}", key=key, json={"name": "x"}), 404)
        problem_of(api("DELETE", f"/me/poses/{pid}", key=key), 404)
    # Library edits by an admin do not reach it either.
    problem_of(api("PATCH", f"/library/poses/{pid}", key=keys.admin, json={"tags": ["x"]}), 404)
    problem_of(api("DELETE", f"/library/poses/{pid}", key=keys.admin), 404)
    assert pid not in _ids(api, keys.user, "/library/poses")  # the library is the public one
    assert api("GET", "/library/categories", key=keys.admin).json() == before

    # Usable in the owner's generations; someone else's is a missing pose.
    ok = api(
        "POST",
        "/generations",
        key=keys.user,
        json={"projectId": _project(api, keys.user), "poseIds": [pid]},
    )
    assert ok.status_code == 202, ok.text
    job = claim_one(engine, settings)
    write_pose(engine, settings, job, pid, 0)
    queue.finish(engine, job.id, job.lease_token)
    popular = api("GET", "/metrics/popular-poses", key=keys.admin).json()["poses"]
    assert pid not in [p["poseId"] for p in popular]  # admins' figures name no private pose
    for key in (keys.other, keys.admin):
        body = {"projectId": _project(api, key), "poseIds": [pid]}
        assert problem_of(api("POST", "/generations", key=key, json=body), 422)["kind"] == (
            "unknown-pose"
        )

    renamed = api("PATCH", f"/me/poses/{pid}", key=keys.user, json={"name": "Lunge 2"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Lunge 2"
    assert api("DELETE", f"/me/poses/{pid}", key=keys.user).status_code == 204
    problem_of(api("GET", f"/me/poses/{pid}", key=keys.user), 404)


def test_bad_private_poses_are_refused(api: Api, keys: Keys, library: None) -> None:
    bad = api("POST", "/me/poses", key=keys.user, json={"name": "x", "keypoints": [[2, 2]]})
    assert problem_of(bad, 422)["kind"] == "invalid-pose"
    none = api("POST", "/me/poses", key=keys.user, json={"name": "x"})
    assert problem_of(none, 422)["kind"] == "missing-map"
    upload = api(
        "POST", "/uploads", key=keys.other, files={"file": ("m.png", png(), "image/png")}
    ).json()["id"]
    theirs = api("POST", "/me/poses", key=keys.user, json={"name": "x", "mapUploadId": upload})
    assert problem_of(theirs, 422)["kind"] == "unknown-upload"


def test_map_upload_pose_worker_recheck_and_promotion(
    api: Api, keys: Keys, library: None, engine: Engine, settings: Settings
) -> None:
    upload = api(
        "POST", "/uploads", key=keys.user, files={"file": ("m.png", png(40, 60), "image/png")}
    ).json()["id"]
    r = api("POST", "/me/poses", key=keys.user, json={"name": "From map", "mapUploadId": upload})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    assert api("GET", f"/library/poses/{pid}/map", key=keys.user).status_code == 200
    busy = api("DELETE", f"/uploads/{upload}", key=keys.user)
    assert problem_of(busy, 409)["kind"] == "upload-in-use"

    # The worker reads the owner's map for the owner's generation, and nothing for anyone else.
    project = _project(api, keys.user)
    mine = load_inputs(engine, project, [pid], keys.user_id).poses[pid]
    assert mine.map_upload_path is not None and mine.map_upload_path.startswith(f"{keys.user_id}/")
    assert pid not in load_inputs(engine, project, [pid], keys.other_id).poses

    # An admin promotes it: public, no owner, the map copied to the admin's upload.
    problem_of(
        api("POST", f"/admin/poses/{pid}/promote", key=keys.user, json={"category": "standing"}),
        403,
    )
    promoted = api(
        "POST",
        f"/admin/poses/{pid}/promote",
        key=keys.admin,
        json={"category": "standing", "slug": "community-lunge"},
    )
    assert promoted.status_code == 200, promoted.text
    body = promoted.json()
    assert body["isPublic"] is True and body["slug"] == "community-lunge"
    assert body["categorySlug"] == "standing"
    with engine.connect() as conn:
        owner, map_id = conn.execute(
            select(PoseLibrary.owner_user_id, PoseLibrary.map_upload_id).where(
                PoseLibrary.id == pid
            )
        ).one()
        map_owner = conn.execute(select(Upload.user_id).where(Upload.id == map_id)).scalar_one()
    assert owner is None and map_owner == keys.admin_id
    problem_of(api("GET", f"/uploads/{upload}", key=keys.user), 404)  # released
    assert pid in _ids(api, keys.other, "/library/poses")
    assert api("GET", f"/library/poses/{pid}/map", key=keys.other).status_code == 200
    assert pid not in _ids(api, keys.user, "/me/poses")
    again = api("POST", f"/admin/poses/{pid}/promote", key=keys.admin, json={"category": 1})
    problem_of(again, 404)


def test_create_in_callers_transaction_and_owner_deletion(
    api: Api, keys: Keys, library: None, engine: Engine
) -> None:
    """The function the photo path calls joins the caller's transaction (a rollback takes the
    pose with it); deleting a user takes their private poses and map uploads."""
    try:
        with write_transaction(engine) as conn:
            made = create_private_pose(conn, keys.user_id, POINTS, "kept?")
            assert made.owner_user_id == keys.user_id
            raise InvalidInput("caller changes its mind")
    except InvalidInput:
        pass
    assert _ids(api, keys.user, "/me/poses") == set()
    kept = create_private_pose(engine, keys.user_id, {"people": [{"body": POINTS}]}, "k")
    upload = api(
        "POST", "/uploads", key=keys.user, files={"file": ("m.png", png(), "image/png")}
    ).json()["id"]
    api("POST", "/me/poses", key=keys.user, json={"name": "m", "mapUploadId": upload})
    assert _ids(api, keys.user, "/me/poses") >= {kept.id}
    with engine.begin() as conn:
        conn.execute(delete(User).where(User.id == keys.user_id))
        left = conn.execute(
            select(PoseLibrary.id).where(PoseLibrary.owner_user_id == keys.user_id)
        ).all()
    assert left == []
