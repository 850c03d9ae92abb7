"""The ComfyUI backend against a local server that speaks ComfyUI's HTTP + websocket protocol."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_comfyui import FakeComfyUI  # type: ignore[import-not-found]
from PIL import Image
from pipeline_keypoints import ARMS_UP, STANDING  # type: ignore[import-not-found]

from posegen.config import load_settings
from posegen.controlnet import render_keypoints
from posegen.exceptions import GeneratorError
from posegen.generators import GenerateRequest, make_generator
from posegen.generators.comfyui import ComfyUIGenerator


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[FakeComfyUI]:
    mode = getattr(request, "param", "ok")
    with FakeComfyUI(mode=mode) as srv:
        yield srv


_OPEN: list[ComfyUIGenerator] = []


@pytest.fixture(autouse=True)
def _close_generators() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _gen(tmp_path: Path, url: str, **extra: Any) -> ComfyUIGenerator:
    gen = make_generator(
        load_settings(data_dir=tmp_path, backend="comfyui", comfyui_url=url, **extra)
    )
    assert isinstance(gen, ComfyUIGenerator)
    _OPEN.append(gen)
    return gen


def _req(keypoints: list[Any] = STANDING, seed: int = 9, **extra: Any) -> GenerateRequest:
    values: dict[str, Any] = dict(
        subject=Image.new("RGB", (100, 80), (30, 200, 60)),
        pose_map=render_keypoints(keypoints, 128, 96),
        prompt='a "dancer", arms up',
        negative_prompt="blurry",
        seed=seed,
        width=128,
        height=96,
    )
    values.update(extra)
    return GenerateRequest(**values)


def test_uploads_queues_follows_websocket_and_downloads(
    tmp_path: Path, server: FakeComfyUI
) -> None:
    gen = _gen(tmp_path, server.url)
    result = gen.generate(_req())

    with Image.open(io.BytesIO(result.image_png)) as img:
        assert img.format == "PNG" and img.size == (128, 96)
    assert result.meta["backend"] == "comfyui" and result.meta["promptId"]
    assert server.calls["upload"] == 2 and server.calls["prompt"] == 1
    assert server.calls["ws"] == 1 and server.calls["view"] == 1
    workflow = server.prompts[0]
    sampler = next(n for n in workflow.values() if n["class_type"] == "KSampler")["inputs"]
    assert sampler["seed"] == 9 and sampler["denoise"] == 0.8
    texts = {n["inputs"]["text"] for n in workflow.values() if n["class_type"] == "CLIPTextEncode"}
    assert texts == {'a "dancer", arms up', "blurry"}
    loaded = [n["inputs"]["image"] for n in workflow.values() if n["class_type"] == "LoadImage"]
    assert all(name in server.inputs for name in loaded) and len(set(loaded)) == 2

    # The pose map and the seed reach the server: changing either changes the picture.
    other_map = gen.generate(_req(keypoints=ARMS_UP))
    other_seed = gen.generate(_req(seed=10))
    assert len({result.image_png, other_map.image_png, other_seed.image_png}) == 3


def test_no_subject_no_map_uses_neutral_inputs(tmp_path: Path, server: FakeComfyUI) -> None:
    gen = _gen(tmp_path, server.url)
    gen.generate(_req(subject=None, pose_map=None))
    sampler = next(n for n in server.prompts[0].values() if n["class_type"] == "KSampler")
    apply = next(n for n in server.prompts[0].values() if n["class_type"] == "ControlNetApply")
    assert sampler["inputs"]["denoise"] == 1.0 and apply["inputs"]["strength"] == 0.0


@pytest.mark.parametrize("server", ["no-ws"], indirect=True)
def test_polls_history_when_the_websocket_is_refused(tmp_path: Path, server: FakeComfyUI) -> None:
    result = _gen(tmp_path, server.url).generate(_req())
    assert result.image_png
    assert server.calls["ws-refused"] == 1 and server.calls["ws"] == 0
    assert server.calls["history"] >= 1


def test_rejected_workflow_is_permanent(tmp_path: Path, server: FakeComfyUI) -> None:
    workflow = json.loads(
        (
            Path(__file__).parents[2] / "src/posegen/generators/workflows/comfyui_default.json"
        ).read_text()
    )
    workflow["10"]["class_type"] = "KSamplerThatDoesNotExist"
    path = tmp_path / "wf.json"
    path.write_text(json.dumps(workflow))
    with pytest.raises(GeneratorError) as err:
        _gen(tmp_path, server.url, comfyui_workflow_path=path).generate(_req())
    assert not err.value.transient and err.value.kind == "workflow-invalid"
    assert err.value.whole_generation and not err.value.outage
    # ComfyUI 0.8.0: 400 invalid_prompt, the node named in "details", empty node_errors.
    assert "Cannot execute because node KSamplerThatDoesNotExist does not exist" in (
        err.value.message
    )
    assert "Node ID '#10'" in err.value.message


def test_unreachable_server_is_transient(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    with pytest.raises(GeneratorError) as err:
        _gen(tmp_path, f"http://127.0.0.1:{port}").generate(_req())
    assert err.value.transient and err.value.kind == "comfyui-unreachable"


@pytest.mark.parametrize("server", ["http-500"], indirect=True)
def test_server_error_is_transient(tmp_path: Path, server: FakeComfyUI) -> None:
    with pytest.raises(GeneratorError) as err:
        _gen(tmp_path, server.url).generate(_req())
    assert err.value.transient and err.value.kind == "comfyui-unavailable"


@pytest.mark.parametrize("server", ["exec-error"], indirect=True)
def test_execution_error_is_permanent(tmp_path: Path, server: FakeComfyUI) -> None:
    with pytest.raises(GeneratorError) as err:
        _gen(tmp_path, server.url).generate(_req())
    assert not err.value.transient and err.value.kind == "comfyui-execution-error"
    assert "KSampler" in err.value.message and "out of memory" in err.value.message


@pytest.mark.parametrize("server", ["hang"], indirect=True)
def test_deadline_gives_up_and_takes_the_prompt_back(tmp_path: Path, server: FakeComfyUI) -> None:
    gen = _gen(tmp_path, server.url, comfyui_timeout_seconds=0.5)
    with pytest.raises(GeneratorError) as err:
        gen.generate(_req())
    assert err.value.transient and err.value.kind == "generator-timeout"
    assert server.calls["queue-delete"] == 1 and server.calls["interrupt"] == 1
