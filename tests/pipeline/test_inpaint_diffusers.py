"""The diffusers backend repaints a background with its inpainting pipeline, on CPU, with tiny
random SD1.5 and SDXL weights loaded from disk; the subject's pixels come back exactly."""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw
from pipeline_keypoints import STANDING  # type: ignore[import-not-found]
from pipeline_tiny_models import build  # type: ignore[import-not-found]

from posegen.config import Settings, load_settings
from posegen.controlnet import render_keypoints
from posegen.exceptions import GeneratorError
from posegen.generators import GenerateRequest, InpaintRequest, can_inpaint, make_generator
from posegen.generators.diffusers_backend import DiffusersGenerator


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def weights(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp(f"inpaint-weights-{request.param}")
    model, controlnet = build(root, request.param)
    return request.param, model, controlnet


def _settings(tmp_path: Path, weights: Any, **extra: Any) -> Settings:
    variant, model, controlnet = weights
    values: dict[str, Any] = dict(
        data_dir=tmp_path,
        backend="diffusers",
        diffusers_variant=variant,
        diffusers_model_path=model,
        diffusers_controlnet_path=controlnet,
        diffusers_steps=2,
        diffusers_device="cpu",
    )
    values.update(extra)
    return load_settings(**values)


def _gen(tmp_path: Path, weights: Any, **extra: Any) -> DiffusersGenerator:
    gen = make_generator(_settings(tmp_path, weights, **extra))
    assert isinstance(gen, DiffusersGenerator)
    return gen


#: Not a multiple of 8: the pipeline runs at 72 x 56 and the result comes back at this size.
SIZE = (70, 54)
BOX = (22, 6, 48, 50)
SKY = (40, 90, 200)


def _req(seed: int = 5, **extra: Any) -> InpaintRequest:
    image = Image.new("RGB", SIZE, SKY)
    ImageDraw.Draw(image).ellipse(BOX, fill=(230, 180, 150))
    mask = Image.new("L", SIZE, 0)
    ImageDraw.Draw(mask).ellipse(BOX, fill=255)
    values: dict[str, Any] = dict(
        image=image, mask=mask, prompt="a beach at noon", negative_prompt="blurry", seed=seed
    )
    values.update(extra)
    return InpaintRequest(**values)


def _pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def test_repaints_the_background_keeps_the_subject_and_follows_the_seed(
    tmp_path: Path, weights: Any
) -> None:
    gen = _gen(tmp_path, weights, inpaint_steps=3)
    assert can_inpaint(gen)
    req = _req()
    first = gen.inpaint(req)

    out = _pixels(first.image_png)
    assert out.shape == (SIZE[1], SIZE[0], 3)
    original = np.asarray(req.image, dtype=np.int16)
    mask = np.asarray(req.mask)
    assert np.array_equal(out[mask == 255], original[mask == 255])
    far = out[:, :12]  # clear of the subject and its feathered edge
    assert np.abs(far - np.array(SKY)).mean() > 10, "the background was not repainted"
    assert first.steps == 3 and first.seed == 5 and first.prompt == "a beach at noon"
    assert first.meta["mode"] == "inpaint" and first.meta["strength"] == 1.0
    assert first.meta["variant"] == weights[0] and first.meta["device"] == "cpu"

    assert gen.inpaint(req).image_png == first.image_png
    other = _pixels(gen.inpaint(_req(seed=6)).image_png)
    assert np.abs(other - out)[mask == 0].max() > 0, "the seed was ignored"
    assert np.array_equal(other[mask == 255], original[mask == 255])


def test_inpainting_shares_the_weights_and_leaves_generation_as_it_was(
    tmp_path: Path, weights: Any
) -> None:
    gen = _gen(tmp_path, weights)
    pose = GenerateRequest(
        subject=None,
        pose_map=render_keypoints(STANDING, 64, 64),
        prompt="a person",
        negative_prompt=None,
        seed=2,
        width=64,
        height=64,
    )
    before = gen.generate(pose).image_png
    gen.inpaint(_req())
    loaded = gen.load()
    # One set of modules, in the dtype they were loaded in; no ControlNet in the inpainter.
    assert loaded.inpaint.unet is loaded.txt2img.unet and loaded.inpaint.vae is loaded.txt2img.vae
    assert loaded.txt2img.unet.dtype == loaded.inpaint.unet.dtype
    assert "controlnet" not in loaded.inpaint.components
    assert gen.generate(pose).image_png == before


def test_the_deadline_stops_between_steps(tmp_path: Path, weights: Any) -> None:
    gen = _gen(tmp_path, weights)
    with pytest.raises(GeneratorError) as err:
        gen.inpaint(dataclasses.replace(_req(), deadline=time.monotonic() - 1))
    assert err.value.kind == "generator-timeout" and not err.value.transient


def test_the_inpainter_keeps_half_precision_weights_half(tmp_path: Path, weights: Any) -> None:
    """On a GPU the weights load as fp16; from_pipe would cast the shared modules to fp32 (for
    both pipelines, doubling their memory) unless told the dtype. Checked on CPU by building."""
    import torch

    from posegen.generators.diffusers_backend import _inpaint_pipeline, _load, validate

    variant = weights[0]
    loaded = _load(validate(_settings(tmp_path, weights)), variant, "cpu")  # a private copy
    loaded.txt2img.to(dtype=torch.float16)
    pipe = _inpaint_pipeline(loaded, variant)
    assert pipe.unet is loaded.txt2img.unet
    assert loaded.txt2img.unet.dtype == torch.float16 == loaded.txt2img.vae.dtype
    assert _inpaint_pipeline(loaded, variant) is pipe  # built once
