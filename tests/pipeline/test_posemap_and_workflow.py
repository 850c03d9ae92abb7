"""The posemap backend, backend selection, and ComfyUI workflow templates (no database)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pipeline_keypoints import STANDING  # type: ignore[import-not-found]

from posegen.config import load_settings
from posegen.controlnet import render_keypoints
from posegen.exceptions import ConfigError
from posegen.generators import GenerateRequest, Generator, make_generator
from posegen.generators.posemap import PREVIEW_NOTE, PosemapGenerator
from posegen.generators.workflow import fill, load_template


def _req(**extra: Any) -> GenerateRequest:
    values: dict[str, Any] = dict(
        subject=Image.new("RGB", (300, 200), (200, 180, 160)),
        pose_map=render_keypoints(STANDING, 320, 256),
        prompt="a person",
        negative_prompt=None,
        seed=42,
        width=320,
        height=256,
    )
    values.update(extra)
    return GenerateRequest(**values)


def _decode(png: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG"
    return img.convert("RGB")


def test_posemap_is_deterministic_sized_and_says_it_is_a_preview() -> None:
    gen = PosemapGenerator()
    assert isinstance(gen, Generator)
    first, again = gen.generate(_req()), gen.generate(_req())
    assert first.image_png == again.image_png
    img = _decode(first.image_png)
    assert img.size == (320, 256)
    assert first.meta["preview"] is True and first.meta["note"] == PREVIEW_NOTE
    assert first.meta["subject"] is True and first.meta["poseMap"] is True
    assert first.steps == 0 and first.seed == 42
    assert first.image is not None and first.image.size == (320, 256)


def test_posemap_draws_the_skeleton_over_the_subject() -> None:
    gen = PosemapGenerator()
    with_map = _decode(gen.generate(_req()).image_png)
    without_map = _decode(gen.generate(_req(pose_map=None)).image_png)
    # The neck-to-hip limb (pure OpenPose colours) shows where the subject was dimmed.
    centre = (int(0.47 * 320), int(0.4 * 256))
    assert with_map.getpixel(centre) != without_map.getpixel(centre)
    # Away from the skeleton and the frame the subject is there, dimmed to 3/5.
    assert without_map.getpixel((40, 40)) == (120, 108, 96)
    assert with_map.getpixel((40, 40)) == (120, 108, 96)


def test_posemap_variations_differ_and_canvas_without_subject() -> None:
    gen = PosemapGenerator()
    a = gen.generate(_req(seed=1)).image_png
    b = gen.generate(_req(seed=2)).image_png
    assert a != b
    blank = gen.generate(_req(subject=None, pose_map=None))
    assert _decode(blank.image_png).size == (320, 256)
    assert blank.meta["subject"] is False and blank.meta["poseMap"] is False


def test_make_generator_picks_and_checks_the_backend(tmp_path: Path) -> None:
    assert make_generator(load_settings(data_dir=tmp_path)).name == "posemap"
    with pytest.raises(ConfigError, match="POSEGEN_COMFYUI_URL"):
        make_generator(load_settings(data_dir=tmp_path, backend="comfyui"))
    with pytest.raises(ConfigError, match="POSEGEN_DIFFUSERS_MODEL_PATH"):
        make_generator(load_settings(data_dir=tmp_path, backend="diffusers"))
    with pytest.raises(ConfigError, match="no image generator"):
        make_generator(load_settings(data_dir=tmp_path, backend="noop"))


def test_default_template_fills_typed_values_without_json_injection() -> None:
    template = load_template(None)
    prompt = 'a "quoted" person}, {"evil": 1'
    values = {
        "prompt": prompt,
        "negative_prompt": "",
        "seed": 123,
        "width": 512,
        "height": 384,
        "steps": 20,
        "denoise": 0.8,
        "subject_image": "s.png",
        "pose_map": "m.png",
        "controlnet_strength": 1.0,
        "checkpoint": "ck.safetensors",
        "controlnet": "cn.pth",
    }
    wf = fill(template, values)
    sampler = next(n for n in wf.values() if n["class_type"] == "KSampler")
    assert sampler["inputs"]["seed"] == 123 and sampler["inputs"]["steps"] == 20
    texts = [n["inputs"]["text"] for n in wf.values() if n["class_type"] == "CLIPTextEncode"]
    assert prompt in texts
    images = {n["inputs"]["image"] for n in wf.values() if n["class_type"] == "LoadImage"}
    assert images == {"s.png", "m.png"}
    assert "{{" not in json.dumps(wf)
    # The template itself is untouched.
    assert "{{seed}}" in json.dumps(template)


def test_operator_template_errors_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "wf.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_template(path)
    path.write_text(json.dumps({"1": {"class_type": "KSampler", "inputs": {"seed": "{{seed}}"}}}))
    with pytest.raises(ConfigError, match=r"missing placeholder\(s\) \['pose_map', 'prompt'\]"):
        load_template(path)
    path.write_text(json.dumps({"1": {"inputs": {}}}))
    with pytest.raises(ConfigError, match="API Format"):
        load_template(path)
    node = {"class_type": "X", "inputs": {"a": "{{prompt}} {{seed}} {{pose_map}} {{colour}}"}}
    path.write_text(json.dumps({"1": node}))
    with pytest.raises(ConfigError, match="unknown placeholder"):
        load_template(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_template(tmp_path / "missing.json")
    # Placeholders inside longer strings are replaced as text.
    node["inputs"]["a"] = "style of {{prompt}}, seed {{seed}}, map {{pose_map}}"
    path.write_text(json.dumps({"1": node}))
    filled = fill(load_template(path), {"prompt": "p", "seed": 5, "pose_map": "m.png"})
    assert filled["1"]["inputs"]["a"] == "style of p, seed 5, map m.png"


def test_a_text_request_preview_shows_its_prompt_not_a_figure() -> None:
    from posegen.generators.posemap import TEXT_HEADING

    gen = PosemapGenerator()
    text = gen.generate(_req(subject=None, pose_map=None, prompt="a dancer mid-leap"))
    other = gen.generate(_req(subject=None, pose_map=None, prompt="a boxer in guard"))
    assert text.meta["shows"] == "prompt" and text.meta["poseMap"] is False
    assert text.meta["preview"] is True
    # the words are drawn: another prompt gives another picture (same seed, same size)
    assert text.image_png != other.image_png
    img = _decode(text.image_png)
    # the heading's yellow is on the canvas, and no OpenPose limb colour is
    colours = {c for _, c in img.getcolors(320 * 256) or []}
    assert (255, 230, 120) in colours
    assert (0, 0, 255) not in colours and (255, 0, 0) not in colours
    assert TEXT_HEADING.startswith("text request")
    with_pose = gen.generate(_req())
    assert with_pose.meta["shows"] == "skeleton"
