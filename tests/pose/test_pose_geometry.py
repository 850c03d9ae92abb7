"""Figures keep their proportions on every output aspect; maps and subjects are not distorted.

Proportions are measured from the rendered raster: the centroid of each joint's own colour
(joints are drawn last, in full colour, so they are not mixed with limbs) gives the pixel
positions of the neck, shoulders and hips; shoulder width / torso length must agree within 2 %
across 512x512, 512x768, 768x512 and 1024x576.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageOps

from posegen.controlnet import render_keypoints
from posegen.controlnet.render import COLOURS, JOINT_RADIUS
from posegen.controlnet.validate import normalise
from posegen.generators.base import fit_map
from posegen.library import builtin_library
from posegen.pose import fit_subject, letterbox, parse_pose, place, placement

SIZES = [(512, 512), (512, 768), (768, 512), (1024, 576)]
NECK, R_SHOULDER, L_SHOULDER, R_HIP, L_HIP = 1, 2, 5, 8, 11
_, POSES = builtin_library()
BY_SLUG = {p.slug: p.keypoints for p in POSES}
FRONTAL = [
    p.slug
    for p in POSES
    if all(p.keypoints["people"][0]["body"][i] for i in (NECK, R_SHOULDER, L_SHOULDER, R_HIP))
    and p.keypoints["people"][0]["body"][L_HIP]
    # Facing the camera: shoulders apart (a profile's coincide, and its ratio is 0).
    and abs(
        p.keypoints["people"][0]["body"][R_SHOULDER][0]
        - p.keypoints["people"][0]["body"][L_SHOULDER][0]
    )
    > 0.05
]


def joint_centre(img: np.ndarray, index: int) -> tuple[float, float]:
    ys, xs = np.nonzero((img == np.array(COLOURS[index], dtype=np.uint8)).all(axis=2))
    assert len(xs) > 20, f"joint {index} not drawn"
    return float(xs.mean()), float(ys.mean())


def shoulder_over_torso(img: np.ndarray) -> float:
    neck = joint_centre(img, NECK)
    rs, ls = joint_centre(img, R_SHOULDER), joint_centre(img, L_SHOULDER)
    rh, lh = joint_centre(img, R_HIP), joint_centre(img, L_HIP)
    hip = ((rh[0] + lh[0]) / 2, (rh[1] + lh[1]) / 2)
    return math.dist(rs, ls) / math.dist(neck, hip)


@pytest.mark.parametrize(
    "slug",
    ["standing-neutral", "hands-both-up", "portrait-half-body-arms-folded", "sitting-chair-front"],
)
def test_raster_proportions_equal_within_2_percent_on_every_aspect(slug: str) -> None:
    ratios = [shoulder_over_torso(np.asarray(render_keypoints(BY_SLUG[slug], *s))) for s in SIZES]
    assert max(ratios) / min(ratios) - 1 < 0.02, dict(zip(SIZES, ratios, strict=True))


def test_placed_points_scale_uniformly_for_every_library_pose() -> None:
    for slug in FRONTAL:
        pose = parse_pose(BY_SLUG[slug])
        ratios = []
        for w, h in SIZES:
            body = place(pose, w, h).people[0].body
            px = {i: (body[i][0] * w, body[i][1] * h) for i in range(18) if body[i]}  # type: ignore[index]
            hip = ((px[R_HIP][0] + px[L_HIP][0]) / 2, (px[R_HIP][1] + px[L_HIP][1]) / 2)
            ratios.append(math.dist(px[R_SHOULDER], px[L_SHOULDER]) / math.dist(px[NECK], hip))
        assert max(ratios) / min(ratios) - 1 < 1e-9, slug


def test_the_old_stretching_would_have_failed() -> None:
    # Drawing x * width, y * height (the old renderer) changes the ratio by the aspect change.
    body = parse_pose(BY_SLUG["standing-neutral"]).people[0].body

    def stretched(w: int, h: int) -> float:
        px = {
            i: (body[i][0] * w, body[i][1] * h)
            for i in (NECK, R_SHOULDER, L_SHOULDER, R_HIP, L_HIP)
        }  # type: ignore[index]
        hip = ((px[R_HIP][0] + px[L_HIP][0]) / 2, (px[R_HIP][1] + px[L_HIP][1]) / 2)
        return math.dist(px[R_SHOULDER], px[L_SHOULDER]) / math.dist(px[NECK], hip)

    assert stretched(512, 512) / stretched(512, 768) - 1 > 0.4


@pytest.mark.parametrize("size", [*SIZES, (256, 1024), (1024, 256)])
def test_no_point_of_a_full_body_pose_leaves_the_canvas(size: tuple[int, int]) -> None:
    w, h = size
    for slug, raw in BY_SLUG.items():
        pose = place(parse_pose(raw), w, h)
        if pose.framing != "full_body":
            continue
        for x, y, _c in pose.points():
            # The whole joint circle is on the canvas, not just its centre.
            assert JOINT_RADIUS <= int(x * w) <= w - 1 - JOINT_RADIUS, (slug, x)
            assert JOINT_RADIUS <= int(y * h) <= h - 1 - JOINT_RADIUS, (slug, y)


@pytest.mark.parametrize("slug", ["portrait-front", "portrait-half-body-arms-folded"])
def test_portrait_framing_stays_a_portrait_framing(slug: str) -> None:
    authored = parse_pose(BY_SLUG[slug])
    ys0 = [y for _x, y, _c in authored.points()]
    xs0 = [x for x, _y, _c in authored.points()]
    for w, h in SIZES:
        pose = place(authored, w, h)
        xs = [x for x, _y, _c in pose.points()]
        ys = [y for _x, y, _c in pose.points()]
        # Head room as authored or less: the head is never pushed down into the frame.
        assert 0 < min(ys) <= min(ys0) + 0.005, (w, h)
        # Centred as authored.
        centre0, centre = (min(xs0) + max(xs0)) / 2, (min(xs) + max(xs)) / 2
        assert abs((centre - 0.5) - (centre0 - 0.5)) < 0.02, (w, h)
        if w > h:
            # Wider than authored: the frame still ends just below the shoulders.
            assert 1 - max(ys) <= 1 - max(ys0) + 0.005, (w, h)


def test_the_authored_aspect_draws_the_authored_points() -> None:
    raw = BY_SLUG["standing-neutral"]
    assert place(parse_pose(raw), 512, 512).people == parse_pose(raw).people
    assert place(parse_pose(raw), 1024, 1024).people == parse_pose(raw).people


def _map(w: int, h: int) -> Image.Image:
    img = Image.new("RGB", (w, h), (0, 0, 0))
    ImageDraw.Draw(img).rectangle((0, 0, w - 1, h - 1), fill=(255, 0, 0))
    return img


def _content_box(img: Image.Image) -> tuple[int, int, int, int]:
    box = img.convert("L").point(lambda v: 255 if v > 24 else 0).getbbox()
    assert box is not None
    return box


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ((300, 200), (512, 512)),
        ((512, 512), (512, 768)),
        ((768, 512), (1024, 576)),
        ((512, 768), (768, 512)),
    ],
)
def test_a_fetched_map_is_letterboxed_not_stretched(
    src: tuple[int, int], dst: tuple[int, int]
) -> None:
    for fitted in (fit_map(_map(*src), *dst), letterbox(_map(*src), *dst)):
        assert fitted.size == dst
        x0, y0, x1, y1 = _content_box(fitted)
        assert abs((x1 - x0) / (y1 - y0) - src[0] / src[1]) < 0.01 * src[0] / src[1] + 2 / (y1 - y0)
        # Centred, black around.
        assert abs(x0 - (dst[0] - x1)) <= 1 and abs(y0 - (dst[1] - y1)) <= 1
        assert fitted.getpixel((0, 0)) == (0, 0, 0) or (x0, y0) == (0, 0)


def test_the_map_cache_letterboxes_what_it_fetches() -> None:
    buf = io.BytesIO()
    _map(300, 200).save(buf, "PNG")
    with Image.open(io.BytesIO(normalise(buf.getvalue(), 10**7, (512, 768)))) as out:
        out.load()
        assert out.size == (512, 768)
        x0, y0, x1, y1 = _content_box(out)
        assert abs((x1 - x0) / (y1 - y0) - 1.5) < 0.02


def _subject(w: int, h: int) -> Image.Image:
    """A person-shaped test photo: red head band at the top, green feet band at the bottom."""
    img = Image.new("RGB", (w, h), (90, 90, 90))
    draw = ImageDraw.Draw(img)
    draw.rectangle((w * 0.4, 0, w * 0.6, h * 0.06), fill=(255, 0, 0))
    draw.rectangle((w * 0.4, h * 0.94, w * 0.6, h - 1), fill=(0, 255, 0))
    return img


def _has(img: Image.Image, colour: tuple[int, int, int]) -> bool:
    arr = np.asarray(img).astype(int)
    return bool((np.abs(arr - np.array(colour)).sum(axis=2) < 60).any())


@pytest.mark.parametrize("size", SIZES)
def test_the_subject_keeps_head_and_feet(size: tuple[int, int]) -> None:
    for photo in (_subject(400, 800), _subject(800, 400), _subject(600, 600)):
        for framing in (None, "full_body"):
            fitted = fit_subject(photo, *size, framing)  # type: ignore[arg-type]
            assert fitted.size == size
            assert _has(fitted, (255, 0, 0)) and _has(fitted, (0, 255, 0)), (photo.size, size)
        # A portrait pose may lose the legs, never the head.
        assert _has(fit_subject(photo, *size, "portrait"), (255, 0, 0))


def test_centre_crop_used_to_cut_the_head() -> None:
    # What the old fit_cover did to a portrait photo in a landscape output.
    cropped = ImageOps.fit(_subject(400, 800), (1024, 576))
    assert not _has(cropped, (255, 0, 0))
    assert _has(fit_subject(_subject(400, 800), 1024, 576), (255, 0, 0))


_coord = st.floats(min_value=-0.2, max_value=1.2, allow_nan=False)
_side = st.integers(min_value=1, max_value=32).map(lambda n: n * 64)


@settings(max_examples=300, deadline=None)
@given(
    points=st.lists(st.one_of(st.none(), st.tuples(_coord, _coord)), min_size=18, max_size=18),
    canvas=st.tuples(st.integers(200, 1900), st.integers(200, 1900)),
    size=st.tuples(_side, _side),
    framing=st.sampled_from(["full_body", "half_body", "portrait"]),
)
def test_placement_is_uniform_and_never_cuts_the_figure(
    points: list[tuple[float, float] | None],
    canvas: tuple[int, int],
    size: tuple[int, int],
    framing: str,
) -> None:
    assume(any(p is not None for p in points))  # an empty pose draws nothing anywhere
    body = [None if p is None else [p[0], p[1]] for p in points]
    pose = parse_pose({"canvas": list(canvas), "framing": framing, "body": body})
    w, h = size
    where = placement(pose, w, h)
    # One scale for both axes, in pixels: the figure keeps its proportions.
    px_per_unit_x = where.sx * w / pose.canvas[0]
    px_per_unit_y = where.sy * h / pose.canvas[1]
    assert math.isclose(px_per_unit_x, px_per_unit_y, rel_tol=1e-9)
    # Every point lands on the output (a pixel inside it), whatever the framing: only what lies
    # beyond the points (the rest of a half body) may fall outside.
    for x, y, _c in place(pose, w, h).points():
        assert 0 <= x < 1 and 0 <= y < 1, (x, y)
