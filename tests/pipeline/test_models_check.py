"""``posegen models check`` as a user runs it: a subprocess, real tiny weights, one line and exit
1 on every problem."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pipeline_single_file import config_only, write_controlnet_single_file  # type: ignore[import-not-found]
from pipeline_tiny_models import build  # type: ignore[import-not-found]


def _run(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("POSEGEN_")}
    base |= {"POSEGEN_DATA_DIR": str(tmp / "data"), "HF_HUB_OFFLINE": "1", **env}
    return subprocess.run(
        [sys.executable, "-m", "posegen", "models", "check", *args],
        env=base,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _one_line_failure(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr[-2000:]
    assert errors[0].startswith("error: model check failed: ")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("check-sd15")
    model, controlnet = build(root, "sd15")
    return {
        "root": root,
        "model": model,
        "cn_file": write_controlnet_single_file(controlnet, root / "openpose.safetensors"),
        "cn_config": config_only(controlnet, root / "cn-config"),
    }


def test_posemap_has_nothing_to_load_and_says_how_to_get_real_images(tmp_path: Path) -> None:
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("backend: posemap\n")
    assert "POSEGEN_BACKEND=diffusers" in proc.stdout


@pytest.mark.diffusers
def test_a_working_model_reports_files_device_dtype_and_step_time(
    tmp_path: Path, tiny: dict[str, Path]
) -> None:
    env = {
        "POSEGEN_BACKEND": "diffusers",
        "POSEGEN_DIFFUSERS_MODEL_PATH": str(tiny["model"]),
        "POSEGEN_DIFFUSERS_CONTROLNET_PATH": str(tiny["cn_file"]),
        "POSEGEN_DIFFUSERS_CONTROLNET_CONFIG_PATH": str(tiny["cn_config"]),
        "POSEGEN_DIFFUSERS_DEVICE": "cpu",
    }
    proc = _run(tmp_path, "--width", "64", "--height", "64", "--json", **env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (out["backend"], out["model"], out["device"], out["dtype"]) == (
        "diffusers",
        "sd15",
        "cpu",
        "float32",
    )
    found = {f["what"]: f["detail"] for f in out["found"]}
    assert "save_pretrained folder" in found["model"]
    assert "single file" in found["controlnet"] and found["controlnet config"]
    assert out["size"] == [64, 64] and out["oneStepSeconds"] > 0 and out["secondsPerStep"] >= 0
    plain = _run(tmp_path, "--width", "64", "--height", "64", **env)
    assert plain.returncode == 0 and plain.stdout.rstrip().endswith("ok")
    assert "device: cpu  dtype: float32" in plain.stdout and "per further step" in plain.stdout


@pytest.mark.diffusers
def test_every_problem_is_one_line_and_exit_1(tmp_path: Path, tiny: dict[str, Path]) -> None:
    _one_line_failure(_run(tmp_path, POSEGEN_BACKEND="diffusers"), "POSEGEN_DIFFUSERS_MODEL_PATH")
    single_without_config = {
        "POSEGEN_BACKEND": "diffusers",
        "POSEGEN_DIFFUSERS_MODEL_PATH": str(tiny["model"]),
        "POSEGEN_DIFFUSERS_CONTROLNET_PATH": str(tiny["cn_file"]),
    }
    _one_line_failure(
        _run(tmp_path, **single_without_config), "POSEGEN_DIFFUSERS_CONTROLNET_CONFIG_PATH"
    )
    broken = tmp_path / "broken"
    shutil.copytree(tiny["model"], broken)
    (broken / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")
    env = {
        **single_without_config,
        "POSEGEN_DIFFUSERS_MODEL_PATH": str(broken),
        "POSEGEN_DIFFUSERS_CONTROLNET_CONFIG_PATH": str(tiny["cn_config"]),
    }
    _one_line_failure(_run(tmp_path, **env), "cannot load diffusers weights")


def test_an_unreachable_comfyui_is_one_line_and_exit_1(tmp_path: Path) -> None:
    proc = _run(
        tmp_path,
        "--width",
        "64",
        "--height",
        "64",
        POSEGEN_BACKEND="comfyui",
        POSEGEN_COMFYUI_URL="http://127.0.0.1:9",
        POSEGEN_COMFYUI_TIMEOUT_SECONDS="5",
        POSEGEN_GENERATOR_TIMEOUT_SECONDS="5",
    )
    _one_line_failure(proc, "smoke render (1 step) failed")


def test_comfyui_renders_at_one_and_three_steps(tmp_path: Path) -> None:
    from fake_comfyui import FakeComfyUI  # type: ignore[import-not-found]

    with FakeComfyUI() as server:
        proc = _run(
            tmp_path,
            "--width",
            "64",
            "--height",
            "64",
            POSEGEN_BACKEND="comfyui",
            POSEGEN_COMFYUI_URL=server.url,
        )
        steps = [
            node["inputs"]["steps"]
            for prompt in server.prompts
            for node in prompt.values()
            if isinstance(node, dict) and node.get("class_type") == "KSampler"
        ]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "checkpoint: v1-5-pruned-emaonly.safetensors" in proc.stdout
    assert "controlnet: control_v11p_sd15_openpose.pth" in proc.stdout
    assert "per further step" in proc.stdout and proc.stdout.rstrip().endswith("ok")
    assert steps == [1, 3]
