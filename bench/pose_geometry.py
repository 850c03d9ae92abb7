"""OpenPose maps: proportions across output aspects, and the raster against the reference.

1. Proportions: shoulder width / torso length, measured from the rendered raster (centroids of
   the neck, shoulder and hip joint colours), for library poses at 512x512, 512x768, 768x512
   and 1024x576; posegen's renderer against the pre-#12 one (``x * width, y * height``,
   Pillow polygons), in the same run. Spread = max / min - 1 across the four sizes.
2. Raster: every fixture in ``tests/controlnet/openpose_fixtures`` (drawn once by
   controlnet_aux's own draw functions) against posegen's drawing: identical bytes or not; and,
   for context, the pre-#12 renderer's mask IoU (non-black pixels) against the reference on the
   body-only fixtures (it draws no hands or faces).
3. Time to draw one 512x768 map, both renderers (median over the library).

Usage: .venv/bin/python bench/pose_geometry.py [--repeat 5]
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from posegen.controlnet import render_keypoints
from posegen.controlnet.render import COLOURS, LIMBS, draw_openpose, limb_colour
from posegen.library import builtin_library
from posegen.pose import parse_pose, placement

FIXTURES = Path(__file__).resolve().parents[1] / "tests/controlnet/openpose_fixtures"
SIZES = [(512, 512), (512, 768), (768, 512), (1024, 576)]
POSES = [
    "standing-neutral",
    "hands-both-up",
    "sitting-chair-front",
    "portrait-half-body-arms-folded",
]


def old_render(body: list[Any], width: int, height: int) -> np.ndarray:
    """The renderer posegen had before #12: points stretched to the output, Pillow polygons
    approximating ellipse2Poly with rounded vertices, Pillow ellipses for joints."""
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    pixels = [None if p is None else (p[0] * width, p[1] * height) for p in body]
    for index, (a, b) in enumerate(LIMBS):
        pa, pb = pixels[a], pixels[b]
        if pa is None or pb is None:
            continue
        cx, cy = (pa[0] + pb[0]) / 2, (pa[1] + pb[1]) / 2
        half = max(int(math.hypot(pa[0] - pb[0], pa[1] - pb[1]) / 2), 1)
        angle = math.radians(int(math.degrees(math.atan2(pb[1] - pa[1], pb[0] - pa[0]))))
        cos_a, sin_a = math.cos(angle), math.sin(angle)
        poly: list[tuple[int, int]] = []
        for deg in range(361):
            t = math.radians(deg)
            ex, ey = half * math.cos(t), 4 * math.sin(t)
            pt = (round(cx + ex * cos_a - ey * sin_a), round(cy + ex * sin_a + ey * cos_a))
            if not poly or poly[-1] != pt:
                poly.append(pt)
        draw.polygon(poly, fill=limb_colour(index))
    for index, p in enumerate(pixels):
        if p is not None:
            x, y = round(p[0]), round(p[1])
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=COLOURS[index])
    return np.asarray(canvas)


def joint(img: np.ndarray, index: int) -> tuple[float, float]:
    ys, xs = np.nonzero((img == np.array(COLOURS[index], dtype=np.uint8)).all(axis=2))
    return float(xs.mean()), float(ys.mean())


def ratio(img: np.ndarray) -> float:
    neck, rs, ls, rh, lh = (joint(img, i) for i in (1, 2, 5, 8, 11))
    hip = ((rh[0] + lh[0]) / 2, (rh[1] + lh[1]) / 2)
    return math.dist(rs, ls) / math.dist(neck, hip)


def proportions() -> dict[str, Any]:
    _, poses = builtin_library()
    by_slug = {p.slug: p.keypoints for p in poses}
    out: dict[str, Any] = {}
    print("\n| pose | renderer | " + " | ".join(f"{w}x{h}" for w, h in SIZES) + " | spread |")
    print("|---|---|" + "---|" * (len(SIZES) + 1))
    for slug in POSES:
        body = by_slug[slug]["people"][0]["body"]
        new = [ratio(np.asarray(render_keypoints(by_slug[slug], w, h))) for w, h in SIZES]
        old = [ratio(old_render(body, w, h)) for w, h in SIZES]
        for name, values in (("posegen", new), ("pre-#12", old)):
            spread = max(values) / min(values) - 1
            cells = " | ".join(f"{v:.3f}" for v in values)
            print(f"| {slug} | {name} | {cells} | {spread * 100:.1f} % |")
            out[f"{slug}/{name}"] = {"ratios": values, "spread": spread}
    return out


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    ma, mb = a.any(axis=2), b.any(axis=2)
    union = (ma | mb).sum()
    return float((ma & mb).sum() / union) if union else 1.0


def raster() -> dict[str, Any]:
    cases = json.loads((FIXTURES / "cases.json").read_text())
    identical = public_identical = public_cases = 0
    ious: list[float] = []
    old_identical = 0
    for case in cases:
        w, h = case["size"]
        with Image.open(FIXTURES / f"{case['name']}.png") as ref_img:
            ref = np.asarray(ref_img.convert("RGB"))
        pose = parse_pose(case["pose"])
        identical += draw_openpose(pose.people, w, h).tobytes() == ref.tobytes()
        if placement(pose, w, h).identity:
            public_cases += 1
            public_identical += render_keypoints(case["pose"], w, h).tobytes() == ref.tobytes()
        people = pose.people
        if all(p.hands is None and p.face is None for p in people) and len(people) == 1:
            body = [None if p is None else p[:2] for p in people[0].body]
            old = old_render(body, w, h)
            ious.append(mask_iou(old, ref))
            old_identical += old.tobytes() == ref.tobytes()
    figures = {
        "fixtures": len(cases),
        "identical": identical,
        "public_path_cases": public_cases,
        "public_path_identical": public_identical,
        "old_iou_min": min(ious),
        "old_iou_mean": statistics.fmean(ious),
        "old_iou_max": max(ious),
        "old_iou_cases": len(ious),
        "old_identical": old_identical,
    }
    print(
        f"\nfixtures: {identical}/{len(cases)} identical bytes (drawing); public path "
        f"(parse, place, draw) {public_identical}/{public_cases} where placement is identity"
    )
    print(
        f"pre-#12 renderer, mask IoU vs reference on {len(ious)} body-only fixtures: "
        f"min {min(ious):.3f}, mean {statistics.fmean(ious):.3f}, max {max(ious):.3f}; "
        f"identical bytes {old_identical}/{len(ious)}"
    )
    return figures


def timing(repeat: int) -> dict[str, float]:
    _, poses = builtin_library()
    new_t: list[float] = []
    old_t: list[float] = []
    for pose in poses:
        body = pose.keypoints["people"][0]["body"]
        for _ in range(repeat):
            t0 = time.perf_counter()
            render_keypoints(pose.keypoints, 512, 768)
            t1 = time.perf_counter()
            old_render(body, 512, 768)
            t2 = time.perf_counter()
            new_t.append(t1 - t0)
            old_t.append(t2 - t1)
    figures = {"new_ms": statistics.median(new_t) * 1e3, "old_ms": statistics.median(old_t) * 1e3}
    print(
        f"\ndraw one 512x768 map (median of {len(new_t)}): posegen {figures['new_ms']:.2f} ms, "
        f"pre-#12 {figures['old_ms']:.2f} ms"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="Timing repeats per library pose.")
    args = parser.parse_args()
    result = {"proportions": proportions(), "raster": raster(), "timing": timing(args.repeat)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
