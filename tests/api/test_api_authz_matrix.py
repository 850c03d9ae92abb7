"""Authorisation matrix over every route of the app: anonymous, the owner, another user, admin.

The expected statuses are a table keyed by (method, path) and the test walks the app's own
route table, so a route added without a row here fails the test instead of escaping it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from api_helpers import Api, Keys, claim_one, png, write_pose
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import Engine

from posegen import accounts, exporting, queue
from posegen.api.app import PREFIX
from posegen.config import Settings, load_settings
from posegen.queue import tasks
from posegen.storage import make_storage
from posegen.vision import client as vision_client
from posegen.vision import subjects

ANON, USER, OTHER, ADMIN = "anonymous", "user", "other", "admin"
#: Roles in the order they call; the one expected to succeed on a mutating route calls last.
ORDER = (ANON, OTHER, ADMIN, USER)


@dataclass
class Row:
    expect: dict[str, int]
    #: Path parameters (and request kwargs) built fresh for this route from the world.
    params: Callable[[World], dict[str, Any]] = lambda w: {}
    request: Callable[[World], dict[str, Any]] = lambda w: {}
    order: tuple[str, ...] = ORDER


def everyone(status: int) -> dict[str, int]:
    return {ANON: 401, USER: status, OTHER: status, ADMIN: status}


def owner_only(status: int, admin: int = 404) -> dict[str, int]:
    return {ANON: 401, USER: status, OTHER: 404, ADMIN: admin}


def admin_only(status: int) -> dict[str, int]:
    return {ANON: 401, USER: 403, OTHER: 403, ADMIN: status}


PUBLIC = {ANON: 200, USER: 200, OTHER: 200, ADMIN: 200}


@dataclass
class World:
    api: Api
    keys: Keys
    engine: Engine
    settings: Settings
    counter: list[int] = field(default_factory=lambda: [0])

    def key(self, role: str) -> str | None:
        return {ANON: None, USER: self.keys.user, OTHER: self.keys.other, ADMIN: self.keys.admin}[
            role
        ]

    def unique(self) -> int:
        self.counter[0] += 1
        return self.counter[0]

    def project(self) -> int:
        r = self.api("POST", "/projects", key=self.keys.user, json={"name": "m"})
        return int(r.json()["id"])

    def finished_generation(self) -> tuple[int, int]:
        """A generation of the user with one stored result; returns (generation id, result id)."""
        body = {"projectId": self.project(), "poseIds": [1]}
        made = self.api("POST", "/generations", key=self.keys.user, json=body)
        assert made.status_code == 202, made.text
        gid = int(made.json()["id"])
        job = claim_one(self.engine, self.settings)
        while job.id != gid:  # a generation an earlier row queued: ended, out of the way
            queue.finish(self.engine, job.id, job.lease_token)
            job = claim_one(self.engine, self.settings)
        write_pose(self.engine, self.settings, job, 1, 0)
        queue.finish(self.engine, job.id, job.lease_token)
        results = self.api("GET", f"/generations/{gid}/results", key=self.keys.user).json()
        return gid, int(results[0]["id"])

    def pending_generation(self) -> int:
        body = {"projectId": self.project(), "poseIds": [2]}
        return int(self.api("POST", "/generations", key=self.keys.user, json=body).json()["id"])

    def pose(self) -> int:
        body = {"name": f"pose {self.unique()}", "category": 1, "keypoints": [[0.5, 0.5]] * 18}
        return int(self.api("POST", "/library/poses", key=self.keys.admin, json=body).json()["id"])

    def unpublished_pose(self) -> int:
        body = {
            "name": f"private {self.unique()}",
            "category": 1,
            "keypoints": [[0.5, 0.5]] * 18,
            "isPublic": False,
        }
        return int(self.api("POST", "/library/poses", key=self.keys.admin, json=body).json()["id"])

    def upload(self) -> int:
        files = {"file": ("u.png", png(20 + self.unique(), 20), "image/png")}
        return int(self.api("POST", "/uploads", key=self.keys.user, files=files).json()["id"])

    def private_pose(self) -> int:
        body = {"name": f"mine {self.unique()}", "keypoints": [[0.5, 0.5]] * 18}
        return int(self.api("POST", "/me/poses", key=self.keys.user, json=body).json()["id"])

    def pose_request(self, **extra: Any) -> int:
        body = {"name": f"request {self.unique()}", **extra}
        return int(self.api("POST", "/requests", key=self.keys.user, json=body).json()["id"])

    def spare_user(self) -> accounts.NewKey:
        return accounts.create_user(self.engine, "Spare", f"spare{self.unique()}@example.com")


def _gen(w: World) -> dict[str, Any]:
    return {"generation_id": w.finished_generation()[0]}


def _fmt(w: World) -> str:
    return sorted(exporting.formats(w.settings))[0]


def _exported(w: World) -> dict[str, Any]:
    """A finished generation whose result was exported by a worker's export task."""
    gid, rid = w.finished_generation()
    exporting.request(w.engine, w.settings, gid, [_fmt(w)])
    (task,) = tasks.claim(w.engine, w.settings, "matrix-worker", 1, ["export"])
    store = make_storage(w.settings)
    assert exporting.run_task(w.engine, w.settings, store, task, threading.Event()) == "completed"
    return {"generation_id": gid, "result_id": rid, "fmt": _fmt(w)}


def _variant(w: World) -> dict[str, Any]:
    """A result with a changed background (its row and files written directly: no helper)."""
    from posegen.backgrounds import records as variants

    gid, rid = w.finished_generation()
    stored = make_storage(w.settings).save_result(gid, "p1-v0-bg-matrix", png())
    with w.engine.begin() as conn:
        vid, _ = variants.insert(
            conn,
            result_id=rid,
            generation_id=gid,
            kind="background",
            variant_key="bg-matrix",
            params={"mode": "blur"},
            image_path=stored.image,
            thumbnail_path=stored.thumbnail,
            size=stored.bytes,
            width=64,
            height=48,
            task_id=None,
        )
    return {"generation_id": gid, "result_id": rid, "variant_id": vid, "what": "image"}


def _variant_exported(w: World) -> dict[str, Any]:
    """A variant exported by a worker's export task (the variant's own, queued on demand)."""
    params = _variant(w)
    gid = params["generation_id"]
    exporting.request(w.engine, w.settings, gid, [_fmt(w)])
    store = make_storage(w.settings)
    while claimed := tasks.claim(w.engine, w.settings, "matrix-worker", 5, ["export"]):
        for task in claimed:
            assert exporting.run_task(w.engine, w.settings, store, task, threading.Event()) == (
                "completed"
            )
    params.pop("what")
    return {**params, "fmt": _fmt(w)}


def _result(w: World) -> dict[str, Any]:
    gid, rid = w.finished_generation()
    return {"generation_id": gid, "result_id": rid, "what": "image"}


def _detected_upload(w: World) -> int:
    """An upload of the user with a kept detection (written directly: no helper needed)."""
    upload_id = w.upload()
    values = {"status": "found", "pose": None, "box": None, "mask_png": png(), "warnings": []}
    subjects._store(w.engine, upload_id, values)
    return upload_id


#: What a vision route answers a permitted caller: 200, or 503 without the vision environment.
VISION = 200 if vision_client.available(load_settings()) else 503

G = "/generations/{generation_id}"
NO_REDIRECT = {"follow_redirects": False}

TABLE: dict[tuple[str, str], Row] = {
    ("GET", "/healthz"): Row(PUBLIC),
    ("GET", "/"): Row({r: 307 for r in ORDER}, request=lambda w: NO_REDIRECT),
    ("GET", "/favicon.ico"): Row(PUBLIC),
    ("GET", "/readyz"): Row(PUBLIC),
    ("GET", "/library/categories"): Row(everyone(200)),
    ("GET", "/library/poses"): Row(everyone(200)),
    ("POST", "/library/poses"): Row(
        admin_only(201),
        request=lambda w: {
            "json": {"name": f"new {w.unique()}", "category": 1, "keypoints": [[0.5, 0.5]] * 18}
        },
    ),
    ("GET", "/library/poses/{pose_id}"): Row(everyone(200), lambda w: {"pose_id": 1}),
    ("GET", "/library/poses/{pose_id}/map"): Row(everyone(200), lambda w: {"pose_id": 1}),
    ("PATCH", "/library/poses/{pose_id}"): Row(
        admin_only(200), lambda w: {"pose_id": w.pose()}, lambda w: {"json": {"tags": ["x"]}}
    ),
    ("DELETE", "/library/poses/{pose_id}"): Row(admin_only(204), lambda w: {"pose_id": w.pose()}),
    # Marks on a pose: anyone signed in, on the poses they can see (a private pose: admins).
    ("PUT", "/library/poses/{pose_id}/favorite"): Row(
        {ANON: 401, USER: 404, OTHER: 404, ADMIN: 200}, lambda w: {"pose_id": w.unpublished_pose()}
    ),
    ("DELETE", "/library/poses/{pose_id}/favorite"): Row(everyone(200), lambda w: {"pose_id": 1}),
    ("PUT", "/library/poses/{pose_id}/rating"): Row(
        {ANON: 401, USER: 404, OTHER: 404, ADMIN: 200},
        lambda w: {"pose_id": w.unpublished_pose()},
        lambda w: {"json": {"stars": 4}},
    ),
    ("DELETE", "/library/poses/{pose_id}/rating"): Row(everyone(200), lambda w: {"pose_id": 1}),
    ("POST", "/projects"): Row(everyone(201), request=lambda w: {"json": {"name": "n"}}),
    ("GET", "/projects"): Row(everyone(200)),
    ("GET", "/projects/{project_id}"): Row(owner_only(200), lambda w: {"project_id": w.project()}),
    ("PATCH", "/projects/{project_id}"): Row(
        owner_only(200), lambda w: {"project_id": w.project()}, lambda w: {"json": {"name": "r"}}
    ),
    ("DELETE", "/projects/{project_id}"): Row(
        owner_only(204), lambda w: {"project_id": w.project()}
    ),
    ("POST", "/projects/{project_id}/archive"): Row(
        owner_only(200), lambda w: {"project_id": w.project()}
    ),
    # Uploads are the owner's alone: another user, admins included, finds nothing.
    ("POST", "/uploads"): Row(
        everyone(201), request=lambda w: {"files": {"file": ("a.png", png(), "image/png")}}
    ),
    ("GET", "/uploads"): Row(everyone(200)),
    ("GET", "/uploads/{upload_id}"): Row(owner_only(200), lambda w: {"upload_id": w.upload()}),
    ("GET", "/uploads/{upload_id}/content"): Row(
        owner_only(200), lambda w: {"upload_id": w.upload()}
    ),
    ("DELETE", "/uploads/{upload_id}"): Row(owner_only(204), lambda w: {"upload_id": w.upload()}),
    # Another user (admins included) naming the owner's project: it does not exist for them.
    ("POST", "/generations"): Row(
        owner_only(202),
        request=lambda w: {"json": {"projectId": w.project(), "poseIds": [1]}},
        order=(ANON, OTHER, ADMIN, USER),
    ),
    ("GET", "/generations"): Row(everyone(200)),
    ("GET", G): Row(owner_only(200, admin=200), _gen),
    ("GET", G + "/events"): Row(owner_only(200, admin=200), _gen),
    # Deleting is the owner's alone, like a project's: for anyone else it does not exist.
    ("DELETE", G): Row(owner_only(204), _gen),
    ("PUT", G + "/keep"): Row(owner_only(200), _gen),
    ("DELETE", G + "/keep"): Row(owner_only(200), _gen),
    ("POST", G + "/cancel"): Row(
        owner_only(200, admin=200), lambda w: {"generation_id": w.pending_generation()}
    ),
    ("GET", G + "/results"): Row(owner_only(200, admin=200), _gen),
    ("GET", G + "/results/{result_id}/{what}"): Row(owner_only(200, admin=200), _result),
    ("GET", G + "/archive"): Row(owner_only(200, admin=200), _gen),
    ("GET", "/exports/formats"): Row(everyone(200)),
    # Exports: as the results they are made of (owner or admin; anyone else finds nothing).
    ("POST", G + "/exports"): Row(
        owner_only(202, admin=202), _gen, lambda w: {"json": {"formats": [_fmt(w)]}}
    ),
    ("GET", G + "/results/{result_id}/exports/{fmt}"): Row(owner_only(200, admin=200), _exported),
    # Background changes: queued (and paid) by the owner only; an admin may look, not spend.
    ("POST", G + "/results/{result_id}/background"): Row(
        owner_only(202 if VISION == 200 else 503),
        lambda w: dict(zip(("generation_id", "result_id"), w.finished_generation(), strict=True)),
        lambda w: {"json": {"mode": "solid", "color": "#000000"}},
    ),
    ("GET", G + "/results/{result_id}/variants/{variant_id}/{what}"): Row(
        owner_only(200, admin=200), _variant
    ),
    ("GET", G + "/results/{result_id}/variants/{variant_id}/exports/{fmt}"): Row(
        owner_only(200, admin=200), _variant_exported
    ),
    ("GET", "/admin/recovery"): Row(admin_only(200)),
    ("POST", "/admin/recovery/run"): Row(admin_only(200)),
    ("GET", "/admin/workers"): Row(admin_only(200)),
    ("GET", "/admin/users"): Row(admin_only(200)),
    ("POST", "/admin/users"): Row(
        admin_only(201),
        request=lambda w: {"json": {"name": "New", "email": f"n{w.unique()}@example.com"}},
    ),
    ("POST", "/admin/users/{user_id}/keys"): Row(
        admin_only(201), lambda w: {"user_id": w.spare_user().account.id}
    ),
    ("DELETE", "/admin/users/{user_id}/keys"): Row(
        admin_only(200), lambda w: {"user_id": w.spare_user().account.id}
    ),
    # Vision: any user may extract a pose from a photo (503 where the vision environment is
    # missing); an upload's detection is its owner's alone.
    ("POST", "/poses/extract"): Row(
        everyone(VISION), request=lambda w: {"files": {"photo": ("p.png", png(), "image/png")}}
    ),
    ("GET", "/uploads/{upload_id}/detection"): Row(
        owner_only(VISION), lambda w: {"upload_id": w.upload()}
    ),
    ("GET", "/uploads/{upload_id}/detection/mask"): Row(
        owner_only(200), lambda w: {"upload_id": _detected_upload(w)}
    ),
    ("GET", "/credits"): Row(everyone(200)),
    ("GET", "/credits/ledger"): Row(everyone(200)),
    ("GET", "/stats"): Row(everyone(200)),
    ("POST", "/admin/users/{user_id}/credits"): Row(
        admin_only(200),
        lambda w: {"user_id": w.spare_user().account.id},
        request=lambda w: {"json": {"amount": 5, "reason": "matrix"}},
    ),
    ("POST", "/admin/users/{user_id}/plan"): Row(
        admin_only(200),
        lambda w: {"user_id": w.spare_user().account.id},
        request=lambda w: {"json": {"plan": "payg", "reason": "matrix"}},
    ),
    # Signed by the payment provider, not by a key: off (404) unless its secret is set.
    ("POST", "/webhooks/payments"): Row({r: 404 for r in ORDER}),
    ("DELETE", "/admin/keys/{prefix}"): Row(
        admin_only(200), lambda w: {"prefix": w.spare_user().api_key[:10]}
    ),
    # A user's private poses are theirs alone: for anyone else, admins included, they do not
    # exist; admins may promote one to the library.
    ("GET", "/me/poses"): Row(everyone(200)),
    ("POST", "/me/poses"): Row(
        everyone(201),
        request=lambda w: {"json": {"name": f"m{w.unique()}", "keypoints": [[0.5, 0.5]] * 18}},
    ),
    ("GET", "/me/poses/{pose_id}"): Row(owner_only(200), lambda w: {"pose_id": w.private_pose()}),
    ("PATCH", "/me/poses/{pose_id}"): Row(
        owner_only(200),
        lambda w: {"pose_id": w.private_pose()},
        lambda w: {"json": {"name": "renamed"}},
    ),
    ("DELETE", "/me/poses/{pose_id}"): Row(
        owner_only(204), lambda w: {"pose_id": w.private_pose()}
    ),
    ("POST", "/admin/poses/{pose_id}/promote"): Row(
        admin_only(200),
        lambda w: {"pose_id": w.private_pose()},
        lambda w: {"json": {"category": 1, "slug": f"promoted-{w.unique()}"}},
    ),
    # Requests are the community's: everyone signed in reads and votes (not on their own).
    ("GET", "/requests"): Row(everyone(200)),
    ("POST", "/requests"): Row(
        everyone(201), request=lambda w: {"json": {"name": f"wish {w.unique()}"}}
    ),
    ("GET", "/requests/{request_id}"): Row(
        everyone(200), lambda w: {"request_id": w.pose_request()}
    ),
    ("GET", "/requests/{request_id}/reference"): Row(
        everyone(200), lambda w: {"request_id": w.pose_request(referenceUploadId=w.upload())}
    ),
    ("POST", "/requests/{request_id}/vote"): Row(
        {ANON: 401, USER: 409, OTHER: 200, ADMIN: 200}, lambda w: {"request_id": w.pose_request()}
    ),
    ("DELETE", "/requests/{request_id}/vote"): Row(
        everyone(200), lambda w: {"request_id": w.pose_request()}
    ),
    ("GET", "/me/request-events"): Row(everyone(200)),
    ("POST", "/admin/requests/{request_id}/approve"): Row(
        admin_only(200), lambda w: {"request_id": w.pose_request()}, lambda w: {"json": {}}
    ),
    ("POST", "/admin/requests/{request_id}/start"): Row(
        admin_only(200), lambda w: {"request_id": w.pose_request()}, lambda w: {"json": {}}
    ),
    ("POST", "/admin/requests/{request_id}/reject"): Row(
        admin_only(200),
        lambda w: {"request_id": w.pose_request()},
        lambda w: {"json": {"note": "no"}},
    ),
    ("POST", "/admin/requests/{request_id}/complete"): Row(
        admin_only(200),
        lambda w: {"request_id": w.pose_request()},
        lambda w: {"json": {"poseId": 1}},
    ),
    # Routes of the metrics part (checked when its router is installed).
    ("GET", "/metrics"): Row(admin_only(200)),
    ("GET", "/metrics/top-users"): Row(admin_only(200)),
    ("GET", "/metrics/summary"): Row(admin_only(200)),
    ("GET", "/metrics/errors"): Row(admin_only(200)),
    ("GET", "/metrics/popular-poses"): Row(admin_only(200)),
}


#: The dashboard signs browsers in with a session cookie, not an API key; its pages are
#: covered by the web part's own tests. Static files and the interactive docs need no key.
NOT_KEY_AUTH = ("/ui", "/docs", "/openapi.json")


def app_routes(app: FastAPI) -> dict[tuple[str, str], str]:
    """Every (method, path) the app serves (included routers flattened), API prefix cut off,
    mapped to the full path template."""
    out = {}
    for route in iter_route_contexts(app.routes):
        if not route.path or not route.methods or route.path.startswith(NOT_KEY_AUTH):
            continue
        path = route.path.removeprefix(PREFIX) or "/"
        for method in route.methods - {"HEAD", "OPTIONS"}:
            out[(method, path)] = route.path
    return dict(sorted(out.items()))


def test_every_route_is_in_the_matrix(app: FastAPI) -> None:
    routes = app_routes(app)
    assert ("POST", "/generations") in routes and ("GET", "/healthz") in routes
    missing = [r for r in routes if r not in TABLE]
    assert not missing, f"routes without an authorisation row: {missing}"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The matrix submits a generation for many of its rows: more than one user's default
    allowance per minute (a limit tested on its own elsewhere)."""
    return settings.model_copy(update={"submissions_per_minute": 1000})


def test_authorisation_matrix(
    app: FastAPI, api: Api, keys: Keys, library: None, engine: Engine, settings: Settings
) -> None:
    world = World(api, keys, engine, settings)
    failures = []
    for (method, path), template in app_routes(app).items():
        row = TABLE[(method, path)]
        url = template.format(**row.params(world))
        for role in row.order:
            kwargs = row.request(world)
            key = world.key(role)
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            r = api.client.request(method, url, headers=headers, **kwargs)
            if r.status_code != row.expect[role]:
                failures.append((method, url, role, row.expect[role], r.status_code, r.text[:120]))
            elif r.status_code >= 400:
                assert r.headers["content-type"].startswith("application/problem+json")
    assert not failures, "\n".join(map(str, failures))
