"""A background painted from a prompt, end to end: the API on a real HTTP server, a real
``posegen worker`` process with ``POSEGEN_BACKEND=comfyui`` against a local server that speaks
ComfyUI's protocol (the inpaint workflow, ``/upload/mask``), and the real vision helper. Asked at
submit and later on one result: the variant stored beside the original, the person's pixels
kept, the progress on the generation's stream, the credits charged once. A posemap deployment
refuses the same requests (422 ``background-prompt-unsupported``), charging nothing."""

from __future__ import annotations

import io
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from fake_comfyui import FakeComfyUI  # type: ignore[import-not-found]
from PIL import Image
from sqlalchemy import Engine, select
from test_backgrounds_flow import (  # type: ignore[import-not-found]
    CMD,
    NOT_INSTALLED,
    PER_POSE,
    SURCHARGE,
    Shop,
    photo_path,
)

from posegen import accounts, credits, projects, uploads, vision
from posegen.api.app import create_app
from posegen.backgrounds import records
from posegen.config import Settings, load_settings
from posegen.db.engine import make_engine
from posegen.db.models import GenerationEvent, GenerationTask
from posegen.storage import make_storage
from posegen.vision import client

PROMPT = {"mode": "prompt", "prompt": "a sunny beach", "negativePrompt": "people"}
PREFIX = "/api/pose-generator"


@pytest.fixture
def comfy() -> Iterator[FakeComfyUI]:
    with FakeComfyUI(delay=0.01) as server:
        yield server


@pytest.fixture
def prompt_settings(settings: Settings, comfy: FakeComfyUI) -> Settings:
    python = client.helper_python(load_settings())
    if python is None:
        pytest.skip(NOT_INSTALLED)
    return settings.model_copy(
        update={
            "vision_python": python,
            "credits_per_pose": PER_POSE,
            "credits_background_surcharge": SURCHARGE,
            "backend": "comfyui",
            "comfyui_url": comfy.url,
        }
    )


@pytest.fixture
def prompt_engine(prompt_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(prompt_settings)
    yield engine
    engine.dispose()


def _serve(settings: Settings, engine: Engine) -> Iterator[str]:
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, engine),
            host="127.0.0.1",
            port=0,
            log_config=None,
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("server did not start")
        threading.Event().wait(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}{PREFIX}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def http(prompt_settings: Settings, prompt_engine: Engine) -> Iterator[str]:
    yield from _serve(prompt_settings, prompt_engine)


@pytest.fixture
def posemap_http(prompt_settings: Settings, prompt_engine: Engine) -> Iterator[str]:
    posemap = prompt_settings.model_copy(update={"backend": "posemap", "comfyui_url": None})
    yield from _serve(posemap, prompt_engine)


class Studio(Shop):
    """The shop of ``test_backgrounds_flow`` with an API key and a ComfyUI worker."""

    def __init__(self, settings: Settings, engine: Engine, url: str, comfy_url: str) -> None:
        super().__init__(settings, engine)
        made = accounts.create_user(engine, "Cy", "cy@example.com")
        self.user = made.account.id
        credits.grant(engine, self.user, 1000, reason="test")
        path = photo_path()
        assert path is not None
        subject = uploads.store(engine, settings, self.user, path.read_bytes())
        self.project = projects.create(engine, self.user, "beach", None, subject.id).id
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {made.api_key}"}, timeout=60
        )
        self.comfy_url = comfy_url

    def work_on(self, backend: str) -> None:
        extra = {"POSEGEN_BACKEND": backend}
        if backend == "comfyui":
            extra |= {
                "POSEGEN_COMFYUI_URL": self.comfy_url,
                "POSEGEN_COMFYUI_TIMEOUT_SECONDS": "60",
            }
        done = subprocess.run(
            [*CMD, "--burst"], env=self.env(**extra), capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]

    def body(self, **extra: Any) -> dict[str, Any]:
        return {
            "projectId": self.project,
            "poseIds": self.poses,
            "variations": 1,
            "width": 256,
            "height": 320,
            **extra,
        }


def _rgb(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def _check_variant(studio: Studio, original: bytes, changed: bytes) -> None:
    """The person is kept (inside the mask, away from the feathered edge) and the background
    is repainted (most of it changed)."""
    a, b = _rgb(original), _rgb(changed)
    assert a.shape == b.shape
    mask = vision.segment(studio.settings, original)
    person = mask >= 250
    background = mask <= 5
    assert person.sum() > 500 and background.sum() > 500
    diff = np.abs(a - b).max(axis=2)
    assert np.percentile(diff[person], 99) <= 3, "the person's pixels were changed"
    assert (diff[background] > 20).mean() > 0.9, "the background was not repainted"


def test_prompt_background_through_a_comfyui_worker(
    prompt_settings: Settings,
    prompt_engine: Engine,
    comfy: FakeComfyUI,
    http: str,
    posemap_http: str,
) -> None:
    studio = Studio(prompt_settings, prompt_engine, http, comfy.url)
    start = studio.balance()
    r = studio.http.post("/generations", json=studio.body(background=PROMPT))
    assert r.status_code in (201, 202), r.text
    gid = int(r.json()["id"])
    paid = len(studio.poses) * (PER_POSE + SURCHARGE)
    assert studio.balance() == start - paid
    studio.work_on("comfyui")
    assert comfy.calls["upload-mask"] >= len(studio.poses)

    store = make_storage(studio.settings)
    results = studio.results(gid)
    assert len(results) == len(studio.poses)
    made = records.by_result(studio.engine, gid)
    assert sorted(made) == results
    listed = {x["id"]: x for x in studio.http.get(f"/generations/{gid}/results").json()}
    for rid in results:
        (v,) = made[rid]
        assert v.params == PROMPT and v.variant_key.startswith("bg-")
        original = studio.http.get(listed[rid]["imageUrl"].removeprefix(PREFIX))
        (shown,) = listed[rid]["variants"]
        changed = studio.http.get(shown["imageUrl"].removeprefix(PREFIX))
        assert original.status_code == changed.status_code == 200
        assert changed.content == store.read(v.image_path)
        _check_variant(studio, original.content, changed.content)
    rows = studio.task_rows(gid)
    assert [(t.kind, str(t.status), t.attempts) for t in rows] == [
        ("background", "completed", 1)
    ] * len(results)

    # Afterwards on one result: another prompt, charged the surcharge once (asked twice).
    rid = results[0]
    again = {"mode": "prompt", "prompt": "a snowy forest"}
    first = studio.http.post(f"/generations/{gid}/results/{rid}/background", json=again)
    second = studio.http.post(f"/generations/{gid}/results/{rid}/background", json=again)
    assert first.status_code == 202, first.text
    assert second.status_code in (200, 202), second.text
    assert second.json()["taskId"] == first.json()["taskId"]
    assert studio.balance() == start - paid - SURCHARGE
    studio.work_on("comfyui")
    made = records.by_result(studio.engine, gid)
    later = [v for v in made[rid] if v.params == again]
    assert len(later) == 1 and len(made[rid]) == 2
    orig_png = store.read(_result_path(studio, gid, rid))
    _check_variant(studio, orig_png, store.read(later[0].image_path))
    # The two prompts paint different backgrounds.
    assert store.read(later[0].image_path) != store.read(made[rid][0].image_path)

    # Credits: the poses and each change charged once, nothing refunded, the ledger balanced.
    assert studio.balance() == start - paid - SURCHARGE
    task_keys = [k for _, k in studio.ledger() if ":task:" in k]
    assert len(task_keys) == 1 and task_keys[0].startswith("usage:task:")
    assert not any(k.startswith("refund") for _, k in studio.ledger())
    assert credits.check(studio.engine) == []

    # The progress on the generation's stream, in order, each change's events once.
    with studio.engine.connect() as conn:
        events = [
            (str(k), dict(d or {}))
            for k, d in conn.execute(
                select(GenerationEvent.kind, GenerationEvent.data)
                .where(GenerationEvent.generation_id == gid)
                .order_by(GenerationEvent.id)
            )
        ]
    kinds = [k for k, _ in events]
    for kind in ("task_queued", "task_started", "task_completed"):
        assert kinds.count(kind) == len(results) + 1, (kind, kinds)
    assert kinds[-1] == "tasks_settled"
    done = [d for k, d in events if k == "task_completed"]
    assert sorted(int(d["variantId"]) for d in done) == sorted(
        v.id for vs in made.values() for v in vs
    )
    with studio.engine.connect() as conn:
        assert (
            conn.execute(
                select(GenerationTask.id).where(
                    GenerationTask.generation_id == gid, GenerationTask.status != "completed"
                )
            ).first()
            is None
        )
    # Over HTTP: the stream ends with the generation and each settling of its tasks; a client
    # that reconnects with Last-Event-ID reads every event once, then 204.
    with studio.engine.connect() as conn:
        ids = [
            int(i)
            for i in conn.execute(
                select(GenerationEvent.id)
                .where(GenerationEvent.generation_id == gid)
                .order_by(GenerationEvent.id)
            ).scalars()
        ]
    seen: list[tuple[int, str]] = []
    last = "0"
    for _ in range(len(ids) + 2):
        got = studio.http.get(f"/generations/{gid}/events", headers={"Last-Event-ID": last})
        if got.status_code == 204:
            break
        assert got.status_code == 200, got.text
        part = _sse(got.text)
        assert part, got.text
        seen += part
        last = str(part[-1][0])
    assert [i for i, _ in seen] == ids
    assert [k for _, k in seen] == kinds

    # A posemap deployment refuses the same request at submit and on its own result.
    plain = httpx.Client(base_url=posemap_http, headers=dict(studio.http.headers), timeout=60)
    before = studio.balance()
    refused = plain.post("/generations", json=studio.body(background=PROMPT))
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["type"].endswith("/background-prompt-unsupported")
    ok = plain.post("/generations", json=studio.body())
    assert ok.status_code in (201, 202), ok.text
    pgid = int(ok.json()["id"])
    studio.work_on("posemap")
    prid = studio.results(pgid)[0]
    refused = plain.post(f"/generations/{pgid}/results/{prid}/background", json=PROMPT)
    assert refused.status_code == 422, refused.text
    assert refused.json()["type"].endswith("/background-prompt-unsupported")
    assert studio.task_rows(pgid) == []
    assert studio.balance() == before - len(studio.poses) * PER_POSE
    plain.close()
    studio.http.close()


def _sse(text: str) -> list[tuple[int, str]]:
    """``(id, event)`` of each event in an SSE body."""
    out: list[tuple[int, str]] = []
    event: str | None = None
    for line in text.splitlines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("id: ") and event is not None:
            out.append((int(line.removeprefix("id: ")), event))
            event = None
    return out


def _result_path(studio: Studio, gid: int, rid: int) -> str:
    from posegen import generations_read

    found = generations_read.result(studio.engine, gid, rid)
    assert found.image_path
    return str(found.image_path)
