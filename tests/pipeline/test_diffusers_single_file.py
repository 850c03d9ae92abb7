"""Single-file checkpoints (A1111 / civitai style) next to ``save_pretrained`` folders: built
tiny by the test, loaded offline through ``from_single_file`` with a weights-free config folder,
and compared with the same weights loaded from folders (the same seed gives the same bytes)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pipeline_keypoints import STANDING  # type: ignore[import-not-found]
from pipeline_single_file import (  # type: ignore[import-not-found]
    build_sdxl,
    config_only,
    write_controlnet_single_file,
    write_sd15_single_file,
    write_sdxl_single_file,
)
from pipeline_tiny_models import build  # type: ignore[import-not-found]

from posegen.config import load_settings
from posegen.controlnet import render_keypoints
from posegen.exceptions import ConfigError
from posegen.generators import GenerateRequest, make_generator, model_id


def _settings(root: Path, variant: str, model: Path, controlnet: Path, **extra: Any) -> Any:
    return load_settings(
        data_dir=root,
        backend="diffusers",
        diffusers_variant=variant,
        diffusers_model_path=model,
        diffusers_controlnet_path=controlnet,
        diffusers_steps=2,
        diffusers_device="cpu",
        **extra,
    )


def _render(settings: Any) -> np.ndarray:
    gen = make_generator(settings)
    out = gen.generate(
        GenerateRequest(
            subject=None,
            pose_map=render_keypoints(STANDING, 64, 64),
            prompt="a person, standing",
            negative_prompt=None,
            seed=11,
            width=64,
            height=64,
        )
    )
    with Image.open(io.BytesIO(out.image_png)) as img:
        return np.asarray(img.convert("RGB"), dtype=np.int16)


@pytest.fixture(scope="module")
def sd15(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("single-sd15")
    model, controlnet = build(root, "sd15")
    files = root / "downloads"
    files.mkdir()
    return {
        "root": root,
        "model": model,
        "controlnet": controlnet,
        "model_file": write_sd15_single_file(model, files / "tiny-sd15-pruned.safetensors"),
        "cn_file": write_controlnet_single_file(controlnet, files / "tiny-openpose.safetensors"),
        "config": config_only(model, root / "sd15-config"),
        "cn_config": config_only(controlnet, root / "openpose-config"),
    }


@pytest.mark.diffusers
def test_sd15_single_files_render_exactly_like_the_folders(sd15: dict[str, Path]) -> None:
    from safetensors import safe_open

    with safe_open(str(sd15["model_file"]), "pt") as f:
        keys = list(f.keys())
    # the original (A1111 / LDM) layout, not diffusers keys
    assert any(k.startswith("model.diffusion_model.input_blocks.") for k in keys)
    assert any(k.startswith("first_stage_model.encoder.down.") for k in keys)
    assert any(k.startswith("cond_stage_model.transformer.text_model.") for k in keys)
    assert not (sd15["model_file"].parent / "model_index.json").exists()

    single = _settings(
        sd15["root"],
        "sd15",
        sd15["model_file"],
        sd15["cn_file"],
        diffusers_config_path=sd15["config"],
        diffusers_controlnet_config_path=sd15["cn_config"],
    )
    folders = _settings(sd15["root"], "sd15", sd15["model"], sd15["controlnet"])
    a, b = _render(single), _render(folders)
    assert a.shape == (64, 64, 3) and a.std() > 1
    assert np.array_equal(a, b)
    # generations and results record the file's name as the model
    assert model_id(single) == "tiny-sd15-pruned.safetensors"


@pytest.mark.diffusers
def test_a_single_file_needs_its_config_folder(sd15: dict[str, Path]) -> None:
    root = sd15["root"]
    with pytest.raises(ConfigError, match="POSEGEN_DIFFUSERS_CONFIG_PATH") as err:
        make_generator(_settings(root, "sd15", sd15["model_file"], sd15["controlnet"]))
    assert "single file" in str(err.value)
    with pytest.raises(ConfigError, match="POSEGEN_DIFFUSERS_CONTROLNET_CONFIG_PATH"):
        make_generator(
            _settings(
                root,
                "sd15",
                sd15["model"],
                sd15["cn_file"],
                diffusers_controlnet_config_path=root / "nowhere",
            )
        )
    odd = root / "weights.txt"
    odd.write_text("x")
    with pytest.raises(ConfigError, match="neither a folder nor a checkpoint file"):
        make_generator(_settings(root, "sd15", odd, sd15["controlnet"]))
    # a config folder of the wrong family is caught before any weight is read
    with pytest.raises(ConfigError, match="POSEGEN_DIFFUSERS_VARIANT=sdxl"):
        make_generator(
            _settings(
                root,
                "sdxl",
                sd15["model_file"],
                sd15["controlnet"],
                diffusers_config_path=sd15["config"],
            )
        )


@pytest.mark.diffusers
def test_sdxl_single_files_render_exactly_like_the_folders(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """An SGM-layout SDXL checkpoint (two text encoders, OpenCLIP with fused q/k/v) and a
    one-file diffusers-format ControlNet (how most SDXL OpenPose ControlNets ship)."""
    from safetensors import safe_open

    root = tmp_path_factory.mktemp("single-sdxl")
    model, controlnet = build_sdxl(root)
    model_file = write_sdxl_single_file(model, root / "tiny-sdxl-base.safetensors")
    cn_file = write_controlnet_single_file(controlnet, root / "openpose-sdxl.safetensors")
    with safe_open(str(model_file), "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("conditioner.embedders.1.model.transformer.resblocks.") for k in keys)
    assert any(k.startswith("conditioner.embedders.0.transformer.text_model.") for k in keys)
    single = _settings(
        root,
        "sdxl",
        model_file,
        cn_file,
        diffusers_config_path=config_only(model, root / "sdxl-config"),
        diffusers_controlnet_config_path=config_only(controlnet, root / "cn-config"),
    )
    a = _render(single)
    assert a.std() > 1
    assert np.array_equal(a, _render(_settings(root, "sdxl", model, controlnet)))
