"""The diffusers backend on CPU with tiny random SD1.5 and SDXL weights loaded from disk."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pipeline_keypoints import ARMS_UP, STANDING  # type: ignore[import-not-found]
from pipeline_tiny_models import build  # type: ignore[import-not-found]

from posegen.config import Settings, load_settings
from posegen.controlnet import render_keypoints
from posegen.exceptions import ConfigError, GeneratorError
from posegen.generators import GenerateRequest, make_generator


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def weights(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp(f"weights-{request.param}")
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
        diffusers_max_batch=2,
    )
    values.update(extra)
    return load_settings(**values)


def _req(pose_map: Image.Image | None, seed: int, **extra: Any) -> GenerateRequest:
    values: dict[str, Any] = dict(
        subject=None,
        pose_map=pose_map,
        prompt="a person, standing",
        negative_prompt="blurry",
        seed=seed,
        width=64,
        height=64,
    )
    values.update(extra)
    return GenerateRequest(**values)


def _pixels(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def test_same_seed_and_map_identical_other_map_or_seed_differs(
    tmp_path: Path, weights: Any
) -> None:
    gen = make_generator(_settings(tmp_path, weights))
    standing = render_keypoints(STANDING, 64, 64)
    arms_up = render_keypoints(ARMS_UP, 64, 64)

    first = gen.generate(_req(standing, seed=7))
    again = gen.generate(_req(standing, seed=7))
    other_map = gen.generate(_req(arms_up, seed=7))
    other_seed = gen.generate(_req(standing, seed=8))

    assert first.image_png == again.image_png
    base = _pixels(first.image_png)
    assert base.shape == (64, 64, 3)
    assert np.abs(base - _pixels(other_map.image_png)).max() > 0, "the pose map was ignored"
    assert np.abs(base - _pixels(other_seed.image_png)).max() > 0
    assert first.steps == 2 and first.seed == 7 and first.prompt == "a person, standing"
    assert first.meta["variant"] == weights[0]
    assert first.meta["mode"] == "txt2img" and first.meta["device"] == "cpu"
    assert first.meta["controlnetScale"] == 1.0


def test_subject_goes_through_img2img_and_changes_the_output(tmp_path: Path, weights: Any) -> None:
    gen = make_generator(_settings(tmp_path, weights))
    pose = render_keypoints(STANDING, 64, 64)
    red = Image.new("RGB", (80, 64), (220, 30, 30))
    blue = Image.new("RGB", (80, 64), (30, 30, 220))

    on_red = gen.generate(_req(pose, seed=3, subject=red))
    on_red_again = gen.generate(_req(pose, seed=3, subject=red))
    on_blue = gen.generate(_req(pose, seed=3, subject=blue))

    assert on_red.meta["mode"] == "img2img" and on_red.meta["strength"] == 0.8
    assert on_red.image_png == on_red_again.image_png
    assert np.abs(_pixels(on_red.image_png) - _pixels(on_blue.image_png)).max() > 0


def test_variations_of_one_pose_run_as_one_batch(tmp_path: Path, weights: Any) -> None:
    gen = make_generator(_settings(tmp_path, weights))
    pose = render_keypoints(STANDING, 64, 64)
    reqs = [_req(pose, seed=s, variation=i) for i, s in enumerate((11, 12, 13))]

    results = gen.generate_batch(reqs)
    repeat = gen.generate_batch(reqs)

    assert [r.seed for r in results] == [11, 12, 13]
    # max_batch=2: one call of two, one call of one.
    assert [r.meta["batch"] for r in results] == [2, 2, 1]
    assert [r.image_png for r in results] == [r.image_png for r in repeat]
    assert len({r.image_png for r in results}) == 3


def test_text_generation_without_map_runs_unconditioned(tmp_path: Path, weights: Any) -> None:
    gen = make_generator(_settings(tmp_path, weights))
    result = gen.generate(_req(None, seed=5))
    assert result.meta["controlnetScale"] == 0.0
    assert _pixels(result.image_png).shape == (64, 64, 3)


def test_deadline_stops_between_steps(tmp_path: Path, weights: Any) -> None:
    gen = make_generator(_settings(tmp_path, weights))
    pose = render_keypoints(STANDING, 64, 64)
    with pytest.raises(GeneratorError) as err:
        gen.generate(dataclasses.replace(_req(pose, seed=1), deadline=time.monotonic() - 1))
    assert err.value.kind == "generator-timeout" and not err.value.transient


def test_bad_settings_fail_at_start_with_a_clear_message(tmp_path: Path, weights: Any) -> None:
    variant, model, controlnet = weights
    with pytest.raises(ConfigError, match="POSEGEN_DIFFUSERS_MODEL_PATH"):
        make_generator(_settings(tmp_path, weights, diffusers_model_path=None))
    with pytest.raises(ConfigError, match="is not a folder"):
        make_generator(_settings(tmp_path, weights, diffusers_model_path=tmp_path / "nope"))
    with pytest.raises(ConfigError, match=r"no model_index\.json"):
        make_generator(_settings(tmp_path, weights, diffusers_model_path=controlnet))
    with pytest.raises(ConfigError, match="not a ControlNet folder"):
        make_generator(_settings(tmp_path, weights, diffusers_controlnet_path=model / "unet"))
    other = "sd15" if variant == "sdxl" else "sdxl"
    with pytest.raises(ConfigError, match=f"POSEGEN_DIFFUSERS_VARIANT={other}"):
        make_generator(_settings(tmp_path, weights, diffusers_variant=other))


def test_the_saved_folders_look_like_real_ones(weights: Any) -> None:
    variant, model, controlnet = weights
    index = json.loads((model / "model_index.json").read_text())
    # A base pipeline without a ControlNet, like a downloaded SD1.5 / SDXL folder.
    assert "controlnet" not in index
    assert index["_class_name"] == (
        "StableDiffusionXLPipeline" if variant == "sdxl" else "StableDiffusionPipeline"
    )
    assert json.loads((controlnet / "config.json").read_text())["_class_name"] == "ControlNetModel"


def test_unreadable_weights_stop_the_worker_at_start(tmp_path: Path, weights: Any) -> None:
    _variant, model, _controlnet = weights
    broken = tmp_path / "broken-model"
    shutil.copytree(model, broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ConfigError, match="cannot load diffusers weights"):
        make_generator(_settings(tmp_path, weights, diffusers_model_path=broken))
