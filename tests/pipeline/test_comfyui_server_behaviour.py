"""The ComfyUI backend against what a real ComfyUI server does (issue #19), through the fake in
``fake_comfyui.py``, which records the real version each behaviour was observed on (0.8.0):
partial acceptance, whole rejection with message and details, previews, restarts, a slow
``/history``, outages, and the ``/object_info`` start-up check."""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_comfyui import FakeComfyUI  # type: ignore[import-not-found]
from PIL import Image
from pipeline_keypoints import STANDING  # type: ignore[import-not-found]

from posegen.config import load_settings
from posegen.controlnet import render_keypoints
from posegen.exceptions import ConfigError, GeneratorError
from posegen.generators import GenerateRequest, make_generator
from posegen.generators.comfyui import ComfyUIGenerator, _output_image

DEFAULT = json.loads(
    (
        Path(__file__).parents[2] / "src/posegen/generators/workflows/comfyui_default.json"
    ).read_text()
)

_OPEN: list[ComfyUIGenerator] = []


@pytest.fixture(autouse=True)
def _close_generators() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


@pytest.fixture
def server() -> Iterator[FakeComfyUI]:
    with FakeComfyUI() as srv:
        yield srv


def _gen(tmp_path: Path, url: str, workflow: dict[str, Any] | None = None, **extra: Any) -> Any:
    if workflow is not None:
        path = tmp_path / "wf.json"
        path.write_text(json.dumps(workflow))
        extra["comfyui_workflow_path"] = path
    gen = make_generator(
        load_settings(data_dir=tmp_path, backend="comfyui", comfyui_url=url, **extra)
    )
    assert isinstance(gen, ComfyUIGenerator)
    _OPEN.append(gen)
    return gen


def _req(**extra: Any) -> GenerateRequest:
    values: dict[str, Any] = dict(
        subject=Image.new("RGB", (100, 80), (30, 200, 60)),
        pose_map=render_keypoints(STANDING, 128, 96),
        prompt="a dancer",
        negative_prompt=None,
        seed=3,
        width=128,
        height=96,
    )
    values.update(extra)
    return GenerateRequest(**values)


def _noisy(save_the_noise: bool, preview_the_clean: bool) -> dict[str, Any]:
    """The default graph plus an ImageAddNoise node with strength 7.5 (its maximum is 1.0)."""
    wf = copy.deepcopy(DEFAULT)
    wf["13"] = {
        "class_type": "ImageAddNoise",
        "inputs": {"image": ["11", 0], "seed": 1, "strength": 7.5},
    }
    wf["12"]["inputs"]["images"] = ["13", 0] if save_the_noise else ["11", 0]
    if preview_the_clean:
        wf["14"] = {"class_type": "PreviewImage", "inputs": {"images": ["11", 0]}}
    return wf


def test_partial_acceptance_fails_the_generation_naming_the_node(
    tmp_path: Path, server: FakeComfyUI
) -> None:
    # The SaveImage branch is invalid, a PreviewImage branch is valid: ComfyUI 0.8.0 answers
    # 200 with node_errors and runs only the preview. That preview must never become a result.
    gen = _gen(tmp_path, server.url, _noisy(save_the_noise=True, preview_the_clean=True))
    with pytest.raises(GeneratorError) as err:
        gen.generate(_req())
    exc = err.value
    assert exc.kind == "workflow-invalid" and not exc.transient and not exc.outage
    assert exc.whole_generation
    assert "accepted only part of the workflow" in exc.message
    # Both ComfyUI's message and its details (the input's name) survive.
    assert "node 13 (ImageAddNoise): Value 7.5 bigger than max of 1.0: strength" in exc.message
    assert server.calls["prompt"] == 1 and server.calls["view"] == 0
    assert server.calls["queue-delete"] == 1  # the half-run prompt is taken off the server


def test_whole_rejection_keeps_message_and_details(tmp_path: Path, server: FakeComfyUI) -> None:
    gen = _gen(tmp_path, server.url, _noisy(save_the_noise=True, preview_the_clean=False))
    with pytest.raises(GeneratorError) as err:
        gen.generate(_req())
    exc = err.value
    assert exc.kind == "workflow-invalid" and exc.whole_generation
    assert exc.message.startswith("ComfyUI rejected the workflow: Prompt outputs failed validation")
    assert "node 13 (ImageAddNoise): Value 7.5 bigger than max of 1.0: strength" in exc.message


def test_a_missing_model_is_named_with_the_value(tmp_path: Path, server: FakeComfyUI) -> None:
    gen = _gen(tmp_path, server.url, comfyui_checkpoint="nope.safetensors")
    with pytest.raises(GeneratorError) as err:
        gen.generate(_req())
    assert (
        "node 1 (CheckpointLoaderSimple): Value not in list: ckpt_name: 'nope.safetensors' not in"
        in err.value.message
    )


def test_only_the_output_node_counts_never_a_preview() -> None:
    entry = {
        "outputs": {
            "14": {"images": [{"filename": "p.png", "subfolder": "", "type": "temp"}]},
            "12": {"images": [{"filename": "s.png", "subfolder": "x", "type": "output"}]},
        }
    }
    assert _output_image(entry, "12") == {"filename": "s.png", "subfolder": "x", "type": "output"}
    with pytest.raises(GeneratorError) as err:
        _output_image({"outputs": {"14": entry["outputs"]["14"]}}, "12")
    assert err.value.kind == "bad-output" and "output node 12" in err.value.message
    # A preview declared as the output node would never be saved: the same rule applies.
    with pytest.raises(GeneratorError):
        _output_image({"outputs": {"12": entry["outputs"]["14"]}}, "12")


def test_the_output_node_must_be_unambiguous(tmp_path: Path, server: FakeComfyUI) -> None:
    two = copy.deepcopy(DEFAULT)
    two["14"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["11", 0], "filename_prefix": "other"},
    }
    with pytest.raises(ConfigError, match="2 SaveImage nodes"):
        _gen(tmp_path, server.url, two)
    # Marking one with the title "posegen output" settles it.
    two["14"]["_meta"] = {"title": "posegen output"}
    gen = _gen(tmp_path, server.url, two)
    assert gen.generate(_req()).image_png
    only_preview = copy.deepcopy(DEFAULT)
    only_preview["12"]["class_type"] = "PreviewImage"
    only_preview["12"]["_meta"] = {"title": "posegen output"}
    with pytest.raises(ConfigError, match="is a preview"):
        _gen(tmp_path, server.url, only_preview)


def test_no_subject_upload_without_the_placeholder_and_template_steps(
    tmp_path: Path, server: FakeComfyUI
) -> None:
    txt2img = copy.deepcopy(DEFAULT)
    txt2img["6"] = {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": "{{width}}", "height": "{{height}}", "batch_size": 1},
    }
    del txt2img["4"], txt2img["5"]
    txt2img["10"]["inputs"]["steps"] = 12
    result = _gen(tmp_path, server.url, txt2img).generate(_req())
    assert server.calls["upload"] == 1  # the pose map only
    assert result.steps == 12  # what the template does, not POSEGEN_COMFYUI_STEPS
    default = _gen(tmp_path, server.url, comfyui_steps=7).generate(_req())
    assert default.steps == 7 and server.calls["upload"] == 3
    two = copy.deepcopy(txt2img)
    two["15"] = copy.deepcopy(two["10"])
    two["15"]["inputs"]["steps"] = 30
    assert _gen(tmp_path, server.url, two).generate(_req()).steps is None


def test_an_empty_workflow_path_means_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: FakeComfyUI
) -> None:
    monkeypatch.setenv("POSEGEN_COMFYUI_WORKFLOW_PATH", "")
    settings = load_settings(data_dir=tmp_path, backend="comfyui", comfyui_url=server.url)
    assert settings.comfyui_workflow_path is None
    gen = make_generator(settings)
    assert isinstance(gen, ComfyUIGenerator)
    _OPEN.append(gen)
    assert gen.generate(_req()).image_png


def test_a_server_that_forgot_the_prompt_is_an_outage(tmp_path: Path) -> None:
    # What a restart does to a prompt in flight (0.8.0 keeps its queue in memory): the history
    # stays empty. Seen through polling (no websocket), it must not wait for the deadline.
    with FakeComfyUI(mode="no-ws", delay=30.0) as server:  # the prompt would run for 30 s

        def forget() -> None:
            deadline = time.monotonic() + 10
            while not server.running and time.monotonic() < deadline:
                time.sleep(0.01)
            server.running.clear()

        t = threading.Thread(target=forget)
        t.start()
        started = time.monotonic()
        with pytest.raises(GeneratorError) as err:
            _gen(tmp_path, server.url, comfyui_timeout_seconds=60).generate(_req())
        t.join()
    assert err.value.kind == "comfyui-restarted" and err.value.outage and err.value.transient
    assert time.monotonic() - started < 10


def test_a_restart_mid_prompt_is_an_outage(tmp_path: Path) -> None:
    with FakeComfyUI(delay=5.0) as server:
        gen = _gen(tmp_path, server.url, comfyui_timeout_seconds=60)
        errors: list[GeneratorError] = []

        def run() -> None:
            try:
                gen.generate(_req())
            except GeneratorError as exc:
                errors.append(exc)

        t = threading.Thread(target=run)
        t.start()
        deadline = time.monotonic() + 10
        while not server.running and time.monotonic() < deadline:
            time.sleep(0.01)
        server.restart(down_seconds=0.5)
        t.join(30)
        assert not t.is_alive()
    assert len(errors) == 1
    assert errors[0].outage and errors[0].kind in ("comfyui-restarted", "comfyui-unreachable")


@pytest.mark.parametrize("mode", ["no-ws", "ok"])
def test_a_slow_history_still_completes(tmp_path: Path, mode: str) -> None:
    with FakeComfyUI(mode=mode) as server:
        server.history_delay = 0.4
        result = _gen(tmp_path, server.url).generate(_req())
        assert result.image_png and server.calls["history"] >= 1


def test_down_and_5xx_are_outages(tmp_path: Path) -> None:
    server = FakeComfyUI()
    with server:
        gen = _gen(tmp_path, server.url)
        gen.generate(_req())
        server.stop()
        with pytest.raises(GeneratorError) as err:
            gen.generate(_req())
        assert err.value.outage and err.value.kind == "comfyui-unreachable"
        with pytest.raises(GeneratorError) as err:
            gen.probe()
        assert err.value.outage
        server.start()
        server.mode = "http-500"
        with pytest.raises(GeneratorError) as err:
            gen.generate(_req())
        assert err.value.outage and err.value.kind == "comfyui-unavailable"
        server.mode = "ok"
        assert gen.generate(_req()).image_png  # back: the same generator works again


def test_an_execution_error_is_the_pose_not_an_outage(tmp_path: Path) -> None:
    with FakeComfyUI(mode="exec-error") as server:
        with pytest.raises(GeneratorError) as err:
            _gen(tmp_path, server.url).generate(_req())
    exc = err.value
    assert exc.kind == "comfyui-execution-error"
    assert not exc.outage and not exc.transient and not exc.whole_generation


def test_probe_checks_node_classes_and_model_files(tmp_path: Path, server: FakeComfyUI) -> None:
    gen = _gen(tmp_path, server.url)
    gen.probe()  # everything installed
    assert server.calls["object_info"] == 1
    server.controlnets = ["some_other_controlnet.safetensors"]
    with pytest.raises(ConfigError) as err:
        gen.probe()
    assert (
        "node 8 (ControlNetLoader): control_net_name 'control_v11p_sd15_openpose.pth' "
        "is not installed (the server offers some_other_controlnet.safetensors)"
    ) in err.value.message
    server.checkpoints = []
    with pytest.raises(ConfigError) as err:
        gen.probe()
    assert "ckpt_name 'v1-5-pruned-emaonly.safetensors' is not installed" in err.value.message
    custom = copy.deepcopy(DEFAULT)
    custom["10"]["class_type"] = "KSamplerAdvancedPlus"
    with pytest.raises(ConfigError, match="node class 'KSamplerAdvancedPlus' is not installed"):
        _gen(tmp_path, server.url, custom).probe()
