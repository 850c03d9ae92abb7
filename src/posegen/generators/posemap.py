"""``posemap``: the default backend. Draws the pose skeleton over the subject image.

No weights, CPU only, deterministic: it lets the whole service run and be tested on any machine.
Its output is a preview, not a model's picture, and its result metadata says so.
"""

from __future__ import annotations

import hashlib
import textwrap
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
        if req.pose_map is None:
            # A text request has no pose to draw: the preview shows the words it was asked for
            # instead of pretending to have drawn a figure.
            _draw_prompt(draw, req.prompt, width, height)
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
                # A text request's preview shows its prompt, not a figure.
                "shows": "skeleton" if req.pose_map is not None else "prompt",
            },
            image=canvas,
        )


#: Heading of a text request's preview: no model read the prompt, no pose was drawn.
TEXT_HEADING = "text request - no pose drawn"


def _draw_prompt(draw: ImageDraw.ImageDraw, prompt: str, width: int, height: int) -> None:
    size = max(10, min(24, width // 24))
    font = ImageFont.load_default(size)
    margin = _FRAME + 8
    chars = max(8, (width - 2 * margin) * 2 // size)  # the default font is about size/2 wide
    lines = [TEXT_HEADING, "", *textwrap.wrap(prompt, chars)]
    most = max(1, (height - 2 * margin - 20) // (size + 4))
    if len(lines) > most:
        lines = [*lines[: most - 1], "..."]
    for i, line in enumerate(lines):
        fill = (255, 230, 120) if i == 0 else (255, 255, 255)
        draw.text((margin, margin + i * (size + 4)), line, fill=fill, font=font)


def _seed_colour(seed: int) -> tuple[int, int, int]:
    digest = hashlib.sha256((seed % 2**64).to_bytes(8, "big")).digest()
    # Keep it bright enough to read on the dimmed subject.
    return (96 + digest[0] % 160, 96 + digest[1] % 160, 96 + digest[2] % 160)
