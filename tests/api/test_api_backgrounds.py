"""Background changes over HTTP: ``background`` on submit (stored, canonical) and
``POST /generations/{id}/results/{rid}/background`` (202 with the task, idempotent: 40
concurrent identical requests queue and charge one task), hostile inputs as clear problems,
owner only, 503 without the vision environment; a made variant listed and downloaded beside the
original; ``prompt`` only where the backend can inpaint (a small inpainting generator here)."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from typing import Any

import httpx
import pytest
from api_helpers import Api, Keys, claim_one, png, problem_of, write_pose
from fastapi import FastAPI
from live_server import live_server
from PIL import Image
from sqlalchemy import Engine, func, select

from posegen import exporting, queue
from posegen.api.app import create_app
from posegen.backgrounds import flow
from posegen.config import Settings, load_settings
from posegen.db.models import (
    CreditLedger,
    GenerationEvent,
    GenerationTask,
    PoseStatus,
    ResultExport,
    ResultVariant,
    UserGenerationStats,
)
from posegen.generators import GenerateResult
from posegen.queue import tasks
from posegen.storage import make_storage
from posegen.vision import client

NOT_INSTALLED = "vision environment not installed (run `make install-vision`)"


@pytest.fixture
def vision_python() -> Any:
    python = client.helper_python(load_settings())
    if python is None:
        pytest.skip(NOT_INSTALLED)
    return python


@pytest.fixture
def bg_app(settings: Settings, engine: Engine, vision_python: Any) -> FastAPI:
    return create_app(settings.model_copy(update={"vision_python": vision_python}), engine)


def _photo(vision_python: Any) -> bytes:
    for folder in sorted(vision_python.parent.parent.glob("lib/python3*/site-packages/matplotlib")):
        found = folder / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        if found.is_file():
            with Image.open(found) as im:
                buf = io.BytesIO()
                im.convert("RGB").resize((128, 150)).save(buf, "PNG")
                return buf.getvalue()
    pytest.skip(f"{NOT_INSTALLED}: grace_hopper.jpg comes with its matplotlib")


def _finished(
    api: Api, keys: Keys, engine: Engine, settings: Settings, photo: bytes | None = None
) -> tuple[int, list[int]]:
    """A finished generation of the user: pose 1 twice (completed) and pose 2 (failed)."""
    pid = api("POST", "/projects", key=keys.user, json={"name": "bg"}).json()["id"]
    body = {"projectId": pid, "poseIds": [1, 2], "variations": 1}
    gid = int(api("POST", "/generations", key=keys.user, json=body).json()["id"])
    job = claim_one(engine, settings)
    if photo is None:
        write_pose(engine, settings, job, 1, 0)
    else:
        key = queue.variation_key(1, 0)
        image, thumb, size = make_storage(settings).save_result(job.id, key, photo)
        queue.record_pose(
            engine,
            job.id,
            job.lease_token,
            queue.PoseResult(
                variation_key=key,
                pose_id=1,
                variation_index=0,
                status=PoseStatus.COMPLETED,
                image_path=image,
                thumbnail_path=thumb,
                bytes=size,
            ),
        )
    write_pose(engine, settings, job, 2, 0, failed=True)
    queue.finish(engine, job.id, job.lease_token)
    results = api("GET", f"/generations/{gid}/results", key=keys.user).json()
    return gid, [r["id"] for r in sorted(results, key=lambda r: r["variationKey"])]


def _stored(engine: Engine, user_id: int) -> int:
    with engine.connect() as conn:
        found = conn.execute(
            select(UserGenerationStats.result_bytes).where(UserGenerationStats.user_id == user_id)
        ).scalar()
    return int(found or 0)


def _run(engine: Engine, settings: Settings, kind: str = "background") -> list[str]:
    out = []
    store = make_storage(settings)
    run = flow.run_task if kind == "background" else exporting.run_task
    while claimed := tasks.claim(engine, settings, "test-worker", 10, [kind]):
        out += [run(engine, settings, store, t, threading.Event()) for t in claimed]
    return out


def test_submit_stores_the_canonical_background(
    bg_app: FastAPI, keys: Keys, library: None, engine: Engine
) -> None:
    from fastapi.testclient import TestClient

    with TestClient(bg_app) as c:
        api = Api(c)
        pid = api("POST", "/projects", key=keys.user, json={"name": "p"}).json()["id"]
        body = {
            "projectId": pid,
            "poseIds": [1],
            "background": {"mode": "solid", "color": "#ABCDEF"},
        }
        made = api("POST", "/generations", key=keys.user, json=body)
        assert made.status_code == 202, made.text
        assert made.json()["background"] == {"mode": "solid", "color": "#abcdef"}
        gid = made.json()["id"]
        assert api("GET", f"/generations/{gid}", key=keys.user).json()["background"] == {
            "mode": "solid",
            "color": "#abcdef",
        }
        # Without one: null, and the claim hands the worker nothing to do after the pose.
        plain = api("POST", "/generations", key=keys.user, json={"projectId": pid, "poseIds": [2]})
        assert plain.json()["background"] is None


BAD_BACKGROUNDS: list[tuple[Any, int, str]] = [
    ({"mode": "solid", "color": "#12345"}, 422, "invalid-background"),
    ({"mode": "solid", "color": "red"}, 422, "invalid-background"),
    ({"mode": "solid"}, 422, "invalid-background"),
    ({"mode": "sepia"}, 422, "invalid-background"),
    ({"color": "#000000"}, 422, "invalid-background"),
    ({"mode": "solid", "color": "#000000", "extra": 1}, 422, "invalid-background"),
    ({"mode": "blur", "radius": -1}, 422, "invalid-background"),
    ({"mode": "blur", "radius": "big"}, 422, "invalid-background"),
    ({"mode": "blur", "radius": True}, 422, "invalid-background"),
    ({"mode": "blur", "radius": 1e9}, 422, "invalid-background"),
    ({"mode": "image"}, 422, "invalid-background"),
    ({"mode": "image", "uploadId": "1"}, 422, "invalid-background"),
    ({"mode": "image", "uploadId": 999999}, 404, "upload-not-found"),
    ({"mode": "prompt", "prompt": ""}, 422, "invalid-background"),
    ({"mode": "prompt", "prompt": "a beach"}, 422, "background-prompt-unsupported"),
]


def test_hostile_backgrounds_are_clear_problems_at_submit_and_on_a_result(
    bg_app: FastAPI, keys: Keys, library: None, engine: Engine, settings: Settings
) -> None:
    from fastapi.testclient import TestClient

    with TestClient(bg_app) as c:
        api = Api(c)
        gid, (rid, failed_rid) = _finished(api, keys, engine, settings)
        pid = api("POST", "/projects", key=keys.user, json={"name": "q"}).json()["id"]
        others = api(
            "POST", "/uploads", key=keys.other, files={"file": ("x.png", png(), "image/png")}
        ).json()["id"]
        cases = [*BAD_BACKGROUNDS, ({"mode": "image", "uploadId": others}, 404, "upload-not-found")]
        for bg, status, kind in cases:
            sub = api(
                "POST",
                "/generations",
                key=keys.user,
                json={"projectId": pid, "poseIds": [1], "background": bg},
            )
            assert problem_of(sub, status)["kind"] == kind, bg
            one = api(
                "POST", f"/generations/{gid}/results/{rid}/background", key=keys.user, json=bg
            )
            assert problem_of(one, status)["kind"] == kind, bg
        for body in ("not json", [1, 2], None):
            raw = api(
                "POST",
                f"/generations/{gid}/results/{rid}/background",
                key=keys.user,
                content=b"not json" if body == "not json" else json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            assert raw.status_code == 422 and raw.headers["content-type"].startswith(
                "application/problem+json"
            )
        ok = {"mode": "solid", "color": "#000000"}
        # A failed result, a result id that is not there, another generation's result.
        for bad_rid in (failed_rid, 999999):
            r = api(
                "POST", f"/generations/{gid}/results/{bad_rid}/background", key=keys.user, json=ok
            )
            assert problem_of(r, 404)["kind"] == "result-not-found"
        _gid2, (rid2, _) = _finished(api, keys, engine, settings)
        cross = api("POST", f"/generations/{gid}/results/{rid2}/background", key=keys.user, json=ok)
        assert problem_of(cross, 404)["kind"] == "result-not-found"
        # Another user's generation (and an admin, who may look but not spend): 404.
        for key in (keys.other, keys.admin):
            r = api("POST", f"/generations/{gid}/results/{rid}/background", key=key, json=ok)
            problem_of(r, 404)
        no_key = api("POST", f"/generations/{gid}/results/{rid}/background", json=ok)
        assert no_key.status_code == 401
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(GenerationTask)).scalar_one() == 0


def test_without_the_vision_environment_it_is_503(
    settings: Settings, engine: Engine, keys: Keys, library: None, tmp_path: Any
) -> None:
    from fastapi.testclient import TestClient

    missing = settings.model_copy(update={"vision_python": tmp_path / "no-such-python"})
    with TestClient(create_app(missing, engine)) as c:
        api = Api(c)
        gid, (rid, _) = _finished(api, keys, engine, missing)
        ok = {"mode": "blur"}
        r = api("POST", f"/generations/{gid}/results/{rid}/background", key=keys.user, json=ok)
        assert problem_of(r, 503)["kind"] == "vision-not-installed"
        pid = api("POST", "/projects", key=keys.user, json={"name": "v"}).json()["id"]
        sub = api(
            "POST",
            "/generations",
            key=keys.user,
            json={"projectId": pid, "poseIds": [1], "background": ok},
        )
        assert problem_of(sub, 503)["kind"] == "vision-not-installed"


def test_forty_identical_requests_queue_and_charge_one_task(
    settings: Settings, engine: Engine, keys: Keys, library: None, vision_python: Any
) -> None:
    from posegen import credits

    priced = settings.model_copy(
        update={"vision_python": vision_python, "credits_background_surcharge": 7}
    )
    app = create_app(priced, engine)
    credits.grant(engine, keys.user_id, 100, reason="test")
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        gid, (rid, _) = _finished(Api(c), keys, engine, priced)
    barrier = threading.Barrier(40)
    out: list[httpx.Response | None] = [None] * 40
    with live_server(app, priced) as (base, _port):

        def one(i: int) -> None:
            with httpx.Client(timeout=120) as c:
                barrier.wait()
                out[i] = c.post(
                    f"{base}/generations/{gid}/results/{rid}/background",
                    json={"mode": "solid", "color": "#102030"},
                    headers={"Authorization": f"Bearer {keys.user}"},
                )

        threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        answers = [r for r in out if r is not None]
        assert len(answers) == 40
        codes = sorted(r.status_code for r in answers)
        assert codes == [200] * 39 + [202], [r.text for r in answers if r.status_code >= 400]
        assert len({r.json()["taskId"] for r in answers}) == 1
        assert sum(r.json()["queued"] for r in answers) == 1
        assert {r.json()["price"] for r in answers} == {7}
        # The same key with another change: a conflict; the same key and change: the same task.
        h = {"Authorization": f"Bearer {keys.user}", "Idempotency-Key": "k-1"}
        url = f"{base}/generations/{gid}/results/{rid}/background"
        first = httpx.post(url, json={"mode": "blur"}, headers=h, timeout=60)
        assert first.status_code == 202
        same = httpx.post(url, json={"mode": "blur"}, headers=h, timeout=60)
        assert same.status_code == 200 and same.json()["taskId"] == first.json()["taskId"]
        clash = httpx.post(url, json={"mode": "blur", "radius": 3}, headers=h, timeout=60)
        assert problem_of(clash, 409)["kind"] == "idempotency-conflict"
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(GenerationTask)).scalar_one() == 2
        charged = conn.execute(
            select(func.sum(CreditLedger.amount)).where(
                CreditLedger.idempotency_key.like("usage:task:%")
            )
        ).scalar_one()
        kinds = [
            str(k)
            for k in conn.execute(
                select(GenerationEvent.kind)
                .where(GenerationEvent.generation_id == gid)
                .order_by(GenerationEvent.id)
            ).scalars()
        ]
    assert charged == -14
    assert credits.balance(engine, keys.user_id) == 100 - 14
    assert kinds.count("task_queued") == 2


def test_a_made_variant_is_listed_downloaded_and_zipped(
    bg_app: FastAPI,
    keys: Keys,
    library: None,
    engine: Engine,
    settings: Settings,
    vision_python: Any,
) -> None:
    from fastapi.testclient import TestClient

    tuned = settings.model_copy(update={"vision_python": vision_python})
    with TestClient(bg_app) as c:
        api = Api(c)
        gid, (rid, _) = _finished(api, keys, engine, tuned, _photo(vision_python))
        r = api(
            "POST",
            f"/generations/{gid}/results/{rid}/background",
            key=keys.user,
            json={"mode": "solid", "color": "#0000ff"},
        )
        assert r.status_code == 202 and r.json()["status"] == "pending"
        before = _stored(engine, keys.user_id)
        assert _run(engine, tuned) == ["completed"]
        (result,) = [
            x
            for x in api("GET", f"/generations/{gid}/results", key=keys.user).json()
            if x["id"] == rid
        ]
        (variant,) = result["variants"]
        assert variant["kind"] == "background"
        assert variant["background"] == {"mode": "solid", "color": "#0000ff"}
        image = api("GET", variant["imageUrl"], key=keys.user)
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(image.content)) as im:
            assert im.size == (variant["width"], variant["height"]) == (128, 150)
            assert im.convert("RGB").getpixel((1, 1)) == (0, 0, 255)
        thumb = api("GET", variant["thumbnailUrl"], key=keys.user)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        # The original is untouched and still served.
        original = api("GET", result["imageUrl"], key=keys.user)
        with Image.open(io.BytesIO(original.content)) as im:
            assert im.convert("RGB").getpixel((1, 1)) != (0, 0, 255)
        assert api("GET", variant["imageUrl"], key=keys.other).status_code == 404
        missing = api(
            "GET", f"/generations/{gid}/results/{rid}/variants/999999/image", key=keys.user
        )
        assert problem_of(missing, 404)["kind"] == "variant-not-found"
        archive = api("GET", f"/generations/{gid}/archive", key=keys.user)
        names = sorted(zipfile.ZipFile(io.BytesIO(archive.content)).namelist())
        assert len(names) == 2 and names[0] == "p1-v0.bg-" + names[0].split(".bg-")[1]
        assert names[1] == "p1-v0.png"
        # Exports follow the variant: asked for the generation, made for both images; the
        # variant's listed under it and downloaded; the archive names it apart.
        fmt = sorted(exporting.formats(tuned))[0]
        asked = api("POST", f"/generations/{gid}/exports", key=keys.user, json={"formats": [fmt]})
        assert asked.status_code == 202, asked.text
        assert _run(engine, tuned, "export") == ["completed"]
        (result,) = [
            x
            for x in api("GET", f"/generations/{gid}/results", key=keys.user).json()
            if x["id"] == rid
        ]
        (variant,) = result["variants"]
        assert [e["format"] for e in result["exports"]] == [fmt]
        (vexport,) = variant["exports"]
        assert vexport["format"] == fmt and vexport["url"] != result["exports"][0]["url"]
        got = api("GET", vexport["url"], key=keys.user)
        assert got.status_code == 200 and len(got.content) == vexport["bytes"]
        assert got.content != api("GET", result["exports"][0]["url"], key=keys.user).content
        assert api("GET", vexport["url"], key=keys.other).status_code == 404
        nothing = api("GET", vexport["url"].replace(f"/{fmt}", "/print_a4"), key=keys.user)
        assert nothing.status_code == 404
        zipped = api("GET", f"/generations/{gid}/archive?formats={fmt}", key=keys.user)
        members = sorted(zipfile.ZipFile(io.BytesIO(zipped.content)).namelist())
        assert len(members) == 2 and all(m.startswith(f"{fmt}/") and m.isascii() for m in members)
        digest = names[0].split(".bg-")[1].rsplit(".", 1)[0]
        stem, ext = members[1].rsplit(".", 1)
        assert stem.endswith("-v1") and members[0] == f"{stem}.bg-{digest}.{ext}"
        # The variant's bytes count against the owner's stored results, and go with the
        # generation (rows, files and count).
        exported = result["exports"][0]["bytes"] + vexport["bytes"]
        assert _stored(engine, keys.user_id) == before + variant["bytes"] + exported
        assert api("DELETE", f"/generations/{gid}", key=keys.user).status_code == 204
        assert _stored(engine, keys.user_id) == 0
        assert api("GET", variant["imageUrl"], key=keys.user).status_code == 404
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(ResultVariant)).scalar_one() == 0
            assert conn.execute(select(func.count()).select_from(ResultExport)).scalar_one() == 0


class _Painter:
    """A small inpainting generator: paints the whole frame one colour, records the request."""

    name = "posemap"
    can_inpaint = True

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def inpaint(self, req: Any) -> GenerateResult:
        self.seen.append(req)
        out = Image.new("RGB", req.image.size, (250, 200, 0))
        buf = io.BytesIO()
        out.save(buf, "PNG")
        return GenerateResult(buf.getvalue(), req.seed, req.prompt, None, 0.0, image=out)


def test_prompt_mode_on_a_backend_that_can_inpaint(
    bg_app: FastAPI,
    keys: Keys,
    library: None,
    engine: Engine,
    settings: Settings,
    vision_python: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fastapi.testclient import TestClient

    from posegen import backends

    # The API asks backends which backend can inpaint; here posemap may, painted by _Painter.
    monkeypatch.setattr(backends, "INPAINT_BACKENDS", backends.INPAINT_BACKENDS | {"posemap"})
    painter = _Painter()
    flow.set_generator("posemap", painter)
    tuned = settings.model_copy(update={"vision_python": vision_python})
    try:
        with TestClient(bg_app) as c:
            api = Api(c)
            gid, (rid, _) = _finished(api, keys, engine, tuned, _photo(vision_python))
            body = {"mode": "prompt", "prompt": "a sunny beach", "negativePrompt": "people"}
            r = api(
                "POST", f"/generations/{gid}/results/{rid}/background", key=keys.user, json=body
            )
            assert r.status_code == 202, r.text
            assert _run(engine, tuned) == ["completed"]
            (result,) = [
                x
                for x in api("GET", f"/generations/{gid}/results", key=keys.user).json()
                if x["id"] == rid
            ]
            (variant,) = result["variants"]
            image = api("GET", variant["imageUrl"], key=keys.user)
            with Image.open(io.BytesIO(image.content)) as im:
                assert im.convert("RGB").getpixel((1, 1)) == (250, 200, 0)
    finally:
        flow.set_generator("posemap", None)
    (req,) = painter.seen
    assert req.image.mode == "RGB" and req.mask.mode == "L" and req.image.size == req.mask.size
    assert req.prompt == "a sunny beach" and req.negative_prompt == "people"
    lo, hi = req.mask.getextrema()
    assert (lo, hi) == (0, 255) and len(req.mask.histogram()[1:255]) == 254
    assert sum(req.mask.histogram()[1:255]) == 0


def _events(text: str) -> list[dict[str, Any]]:
    out, current = [], {}
    for line in text.splitlines():
        if line == "":
            if "data" in current:
                out.append(current)
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                current["data"] = json.loads(value)
            elif name in ("id", "event"):
                current[name] = value
    return out


def test_a_change_reopens_the_ended_stream_every_event_once(
    bg_app: FastAPI,
    keys: Keys,
    library: None,
    engine: Engine,
    settings: Settings,
    vision_python: Any,
) -> None:
    from fastapi.testclient import TestClient

    tuned = settings.model_copy(update={"vision_python": vision_python})
    auth = {"Authorization": f"Bearer {keys.user}"}
    seen: list[dict[str, Any]] = []
    # The TestClient stays open: leaving it would end the app's lifespan (its event feed).
    with (
        TestClient(bg_app) as c,
        live_server(bg_app, tuned) as (base, _port),
        httpx.Client(base_url=base, headers=auth, timeout=60) as client,
    ):
        gid, (rid, _) = _finished(Api(c), keys, engine, tuned, _photo(vision_python))
        seen += _events(client.get(f"/generations/{gid}/events").text)
        assert seen[-1]["event"] == "partial"
        ended = client.get(f"/generations/{gid}/events", headers={"Last-Event-ID": seen[-1]["id"]})
        assert ended.status_code == 204
        client.post(
            f"/generations/{gid}/results/{rid}/background", json={"mode": "blur", "radius": 4}
        ).raise_for_status()
        with client.stream(
            "GET", f"/generations/{gid}/events", headers={"Last-Event-ID": seen[-1]["id"]}
        ) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            buf: list[str] = []
            for line in lines:
                buf.append(line)
                if line == "" and _events("\n".join(buf) + "\n"):
                    break
            (queued,) = _events("\n".join(buf) + "\n")
            assert queued["event"] == "task_queued"
            body = queued["data"]["data"]
            assert body["taskKind"] == "background" and body["resultId"] == rid
            assert _run(engine, tuned) == ["completed"]
            buf += list(lines)
        seen += _events("\n".join(buf) + "\n")
        done = client.get(f"/generations/{gid}/events", headers={"Last-Event-ID": seen[-1]["id"]})
        assert done.status_code == 204
    with engine.connect() as conn:
        expected = [
            (int(i), str(k))
            for i, k in conn.execute(
                select(GenerationEvent.id, GenerationEvent.kind)
                .where(GenerationEvent.generation_id == gid)
                .order_by(GenerationEvent.id)
            )
        ]
    assert [(int(e["id"]), e["event"]) for e in seen] == expected
    assert [k for _, k in expected][-4:] == [
        "task_queued",
        "task_started",
        "task_completed",
        "tasks_settled",
    ]
    completed = next(e for e in seen if e["event"] == "task_completed")
    assert completed["data"]["data"]["variantId"] > 0
    assert completed["data"]["data"]["mode"] == "blur"


def test_a_backdrop_that_is_not_an_image_fails_the_change_and_refunds(
    settings: Settings, engine: Engine, keys: Keys, library: None, vision_python: Any
) -> None:
    """Uploads are checked images, so a non-image is refused at upload; a backdrop whose file
    stopped being an image (damaged storage) fails its change cleanly, refunded once."""
    from fastapi.testclient import TestClient

    from posegen import credits, uploads

    priced = settings.model_copy(
        update={"vision_python": vision_python, "credits_background_surcharge": 5}
    )
    credits.grant(engine, keys.user_id, 50, reason="test")
    with TestClient(create_app(priced, engine)) as c:
        api = Api(c)
        text = api(
            "POST",
            "/uploads",
            key=keys.user,
            files={"file": ("x.png", b"not an image", "image/png")},
        )
        assert 400 <= text.status_code < 500 and text.headers["content-type"].startswith(
            "application/problem+json"
        )
        gid, (rid, _) = _finished(api, keys, engine, priced, _photo(vision_python))
        up = api(
            "POST", "/uploads", key=keys.user, files={"file": ("b.png", png(), "image/png")}
        ).json()["id"]
        view = uploads.get(engine, up, keys.user_id)
        (priced.effective_uploads_dir / view.relpath).write_bytes(b"\x89PNG broken")
        r = api(
            "POST",
            f"/generations/{gid}/results/{rid}/background",
            key=keys.user,
            json={"mode": "image", "uploadId": up},
        )
        assert r.status_code == 202 and credits.balance(engine, keys.user_id) == 45
        assert _run(engine, priced) == ["failed"]
        results = api("GET", f"/generations/{gid}/results", key=keys.user).json()
        assert all(x["variants"] == [] for x in results)
    with engine.connect() as conn:
        task = conn.execute(select(GenerationTask)).one()
        keys_ = [
            str(k)
            for k in conn.execute(
                select(CreditLedger.idempotency_key).where(
                    CreditLedger.idempotency_key.like("%:task:%")
                )
            ).scalars()
        ]
    assert (str(task.status), task.error_kind) == ("failed", "not-an-image")
    assert task.error_message == "The file is not an image."
    assert sorted(keys_) == [f"refund:task:{task.id}:1", f"usage:task:{task.id}:1"]
    assert credits.balance(engine, keys.user_id) == 50
