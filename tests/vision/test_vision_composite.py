"""Person masks and background changes: the selfie-segmentation mask against a hand-made ground
truth on the test photo (IoU >= 0.9), the three modes written to ``test-output/vision/`` for a
person to look at, colour decontamination measured on a synthetic edge, and bad parameters."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from grace_hopper_truth import PERSON_POLYGON, SIZE
from PIL import Image, ImageDraw
from vision_helpers import encode

from posegen import vision
from posegen.config import Settings
from posegen.exceptions import InvalidInput

OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "vision"


def _truth() -> np.ndarray:
    mask = Image.new("L", SIZE, 0)
    ImageDraw.Draw(mask).polygon(PERSON_POLYGON, fill=255)
    return np.asarray(mask) >= 128


def _pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB")).astype(np.int32)


def test_mask_matches_the_hand_made_truth_and_composites_are_written(
    vision_settings: Settings, photo: bytes
) -> None:
    mask = vision.segment(vision_settings, photo)
    assert mask.shape == (SIZE[1], SIZE[0]) and mask.dtype == np.uint8
    person, truth = mask >= 128, _truth()
    iou = (person & truth).sum() / (person | truth).sum()
    assert iou >= 0.9, iou
    OUTPUT.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(OUTPUT / "grace_hopper_mask.png")
    backdrop = encode(Image.radial_gradient("L").resize((300, 200)).convert("RGB"), "JPEG")
    outputs = {
        "solid": vision.change_background(photo, mask, "solid", {"color": "#2E8B57"}),
        "image": vision.change_background(photo, mask, "image", {"image": backdrop}),
        "blur": vision.change_background(photo, mask, "blur", {"radius": 12}),
    }
    original = _pixels(encode(Image.open(io.BytesIO(photo)).convert("RGB")))
    inside = _truth() & (mask >= 250)
    outside = ~_truth() & (mask <= 5)
    for mode, png in outputs.items():
        (OUTPUT / f"grace_hopper_{mode}.png").write_bytes(png)
        pixels = _pixels(png)
        assert pixels.shape == original.shape
        # The person is kept as they were; the background is not.
        assert np.abs(pixels[inside] - original[inside]).mean() < 2.0, mode
        assert np.abs(pixels[outside] - original[outside]).mean() > 10.0, mode
    solid = _pixels(outputs["solid"])
    # The background is the colour, but for the feathered rim along the person.
    assert (np.abs(solid[outside] - (0x2E, 0x8B, 0x57)).max(axis=1) <= 1).mean() > 0.95


def test_decontamination_removes_the_old_backgrounds_colour_from_the_edge() -> None:
    # A red person on a green screen, with a soft edge: edge pixels are red-green mixtures.
    size = 200
    yy, xx = np.mgrid[0:size, 0:size]
    distance = np.hypot(xx - 100, yy - 100)
    alpha = np.clip((60 - distance) / 6 + 0.5, 0, 1)
    red, green = np.array([200, 30, 30]), np.array([20, 220, 20])
    image = alpha[..., None] * red + (1 - alpha[..., None]) * green
    photo = encode(Image.fromarray(image.round().astype(np.uint8)))
    mask = (alpha * 255).round().astype(np.uint8)
    band = (alpha > 0.2) & (alpha < 0.8)
    clean = _pixels(vision.change_background(photo, mask, "solid", {"color": "#000000"}))
    naive = _pixels(
        vision.change_background(photo, mask, "solid", {"color": "#000000", "decontaminate": False})
    )
    # Green spill at the edge, relative to the red: much less with decontamination.
    spill = lambda px: (px[band][:, 1] / np.maximum(px[band][:, 0], 1)).mean()  # noqa: E731
    assert spill(clean) < 0.5 * spill(naive), (spill(clean), spill(naive))
    assert spill(clean) < 0.3  # the red itself: 30 / 200 = 0.15


def test_bad_modes_and_parameters_are_invalid_input() -> None:
    photo = encode(Image.new("RGB", (32, 32), (10, 20, 30)))
    mask = np.full((8, 8), 255, dtype=np.uint8)
    for mode, params in [
        ("prompt", {}),
        ("solid", {"color": "red"}),
        ("solid", {"color": "#12345"}),
        ("image", {}),
        ("blur", {"radius": -1}),
        ("solid", {"color": "#123456", "feather": 500}),
    ]:
        with pytest.raises(InvalidInput) as bad:
            vision.change_background(photo, mask, mode, params)
        assert bad.value.kind == "invalid-background"
    assert vision.parse_color("#A0b1C2") == (0xA0, 0xB1, 0xC2)
    # A PNG mask works like an array (scaled to the image).
    full = vision.change_background(
        photo, encode(Image.new("L", (4, 4), 255)), "solid", {"color": "#ffffff"}
    )
    assert (_pixels(full) == (10, 20, 30)).all()
