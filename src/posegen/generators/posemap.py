"""``posemap``: the default backend. Draws the pose skeleton over the subject image.

No weights, CPU only, deterministic: it lets the whole service run and be tested on any machine.
Its output is a preview, not a model's picture, and its result metadata says so.
"""

from __future__ import annotations

import hashlib
import time

from PIL import Image, ImageDraw, ImageFont

from posegen.generators.base import (
    GenerateRequest,
    GenerateResult,
    SequentialBatch,
    encode_png,
    fit_map,
    fit_subject,
)

PREVIEW_NOTE = "preview render: the pose skeleton drawn over the subject image, not a model output"

# Map pixels darker than this are background (OpenPose maps are drawn on black).
_MASK_LUT = [0] * 24 + [255] * 232
# The subject is dimmed so the skeleton stays readable on bright photos.
_DIM_LUT = [v * 3 // 5 for v in range(256)] * 3
_FRAME = 6


class PosemapGenerator(SequentialBatch):
    """Skeleton over subject (or over a neutral canvas), framed in a seed-derived colour."""

    name = "posemap"
    max_batch = 1

    def generate(self, req: GenerateRequest) -> GenerateResult:
        """Render one preview; the same request always gives the same bytes."""
        started = time.perf_counter()
        width, height = req.width, req.height
        accent = _seed_colour(req.seed)
        if req.subject is not None:
            canvas = fit_subject(req.subject, width, height).point(_DIM_LUT)
        else:
            canvas = Image.new("RGB", (width, height), tuple(64 + c // 8 for c in accent))
        if req.pose_map is not None:
            skeleton = fit_map(req.pose_map, width, height)
            canvas.paste(skeleton, (0, 0), skeleton.convert("L").point(_MASK_LUT))
        draw = ImageDraw.Draw(canvas)
        # The frame colour comes from the seed so variations of one pose are told apart at a glance.
        draw.rectangle((0, 0, width - 1, height - 1), outline=accent, width=_FRAME)
        draw.text(
            (_FRAME + 4, height - _FRAME - 16),
            f"posemap preview  seed {req.seed}",
            fill=(255, 255, 255),
            font=ImageFont.load_default(12),
        )
        png = encode_png(canvas)
        return GenerateResult(
            image_png=png,
            seed=req.seed,
            prompt=req.prompt,
            steps=0,
            duration_s=time.perf_counter() - started,
            meta={
                "backend": self.name,
                "preview": True,
                "note": PREVIEW_NOTE,
                "subject": req.subject is not None,
                "poseMap": req.pose_map is not None,
            },
            image=canvas,
        )


def _seed_colour(seed: int) -> tuple[int, int, int]:
    digest = hashlib.sha256((seed % 2**64).to_bytes(8, "big")).digest()
    # Keep it bright enough to read on the dimmed subject.
    return (96 + digest[0] % 160, 96 + digest[1] % 160, 96 + digest[2] % 160)
