"""What a backend is handed through the real pipeline: undistorted maps and whole subjects.

A portrait output (512x768) and a 16:9 one (1024x576) of library poses authored on a square,
with a tall subject photo: the map the generator receives keeps the figure's proportions, and the
subject keeps its head (and, for a full-body pose, its feet). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw
from pipeline_world import World  # type: ignore[import-not-found]
from sqlalchemy import select

from posegen import projects, uploads
from posegen.controlnet import render_keypoints
from posegen.controlnet.render import COLOURS
from posegen.db.models import PoseLibrary
from posegen.generators import GenerateRequest, GenerateResult
from posegen.generators.posemap import PosemapGenerator
from posegen.library import builtin_library
from posegen.worker.pipeline import PipelineHandler

RED, GREEN = (255, 0, 0), (0, 255, 0)


class _Recording(PosemapGenerator):
    def __init__(self) -> None:
        self.seen: list[GenerateRequest] = []

    def generate(self, req: GenerateRequest) -> GenerateResult:
        self.seen.append(req)
        return super().generate(req)


def _tall_subject() -> bytes:
    img = Image.new("RGB", (400, 800), (90, 90, 90))
    draw = ImageDraw.Draw(img)
    draw.rectangle((160, 0, 240, 48), fill=RED)  # head
    draw.rectangle((160, 752, 240, 799), fill=GREEN)  # feet
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _has(img: Image.Image, colour: tuple[int, int, int]) -> bool:
    arr = np.asarray(img.convert("RGB")).astype(int)
    return bool((np.abs(arr - np.array(colour)).sum(axis=2) < 60).any())


def _ratio(img: Image.Image) -> float:
    arr = np.asarray(img.convert("RGB"))

    def centre(i: int) -> tuple[float, float]:
        ys, xs = np.nonzero((arr == np.array(COLOURS[i], dtype=np.uint8)).all(axis=2))
        return float(xs.mean()), float(ys.mean())

    neck, rs, ls, rh, lh = (centre(i) for i in (1, 2, 5, 8, 11))
    return math.dist(rs, ls) / math.dist(neck, ((rh[0] + lh[0]) / 2, (rh[1] + lh[1]) / 2))


def test_backends_get_undistorted_maps_and_whole_subjects(world: World) -> None:
    subject = uploads.store(world.engine, world.settings, world.user_id, _tall_subject())
    project = projects.create(world.engine, world.user_id, "tall", None, subject.id)
    with world.engine.connect() as conn:
        ids = dict(conn.execute(select(PoseLibrary.slug, PoseLibrary.id)).all())
    poses = [ids["standing-neutral"], ids["portrait-front"]]
    for w, h in ((512, 768), (1024, 576)):
        world.project_id = project.id
        world.submit(poses, variations=1, width=w, height=h)
    recording = _Recording()
    world.run_pipeline(PipelineHandler(world.settings, generator=recording))

    _, library = builtin_library()
    neutral = next(p for p in library if p.slug == "standing-neutral").keypoints
    authored = _ratio(render_keypoints(neutral, 512, 512))
    assert len(recording.seen) == 4
    full_body = 0
    for req in recording.seen:
        assert req.pose_map is not None and req.subject is not None
        assert req.pose_map.size == req.subject.size == (req.width, req.height)
        assert _has(req.subject, RED), "the subject's head was cut"
        if "Neutral" in req.prompt:
            assert abs(_ratio(req.pose_map) / authored - 1) < 0.02, (req.width, req.height)
            assert _has(req.subject, GREEN), "a full-body pose lost the subject's feet"
            full_body += 1
    assert full_body == 2
