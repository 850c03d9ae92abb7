"""The ComfyUI backend repaints a background: image and mask uploads (``/upload/image``,
``/upload/mask``), the inpaint workflow, the subject kept exactly; against a local server that
speaks ComfyUI's protocol."""

from __future__ import annotations

import copy
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_comfyui import FakeComfyUI  # type: ignore[import-not-found]
from PIL import Image, ImageDraw

from posegen.config import load_settings
from posegen.exceptions import ConfigError, GeneratorError
from posegen.generators import InpaintRequest, can_inpaint, make_generator
from posegen.generators.comfyui import ComfyUIGenerator

INPAINT = json.loads(
    (
        Path(__file__).parents[2] / "src/posegen/generators/workflows/comfyui_inpaint.json"
    ).read_text()
)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[FakeComfyUI]:
    with FakeComfyUI(mode=getattr(request, "param", "ok")) as srv:
        yield srv


_OPEN: list[ComfyUIGenerator] = []


@pytest.fixture(autouse=True)
def _close_generators() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _gen(
    tmp_path: Path, url: str, workflow: dict[str, Any] | None = None, **extra: Any
) -> ComfyUIGenerator:
    if workflow is not None:
        path = tmp_path / "inpaint.json"
        path.write_text(json.dumps(workflow))
        extra["comfyui_inpaint_workflow_path"] = path
    gen = make_generator(
        load_settings(data_dir=tmp_path, backend="comfyui", comfyui_url=url, **extra)
    )
    assert isinstance(gen, ComfyUIGenerator)
    _OPEN.append(gen)
    return gen


#: Not a multiple of 8 on either side: the backend must round it and give this size back.
SIZE = (100, 75)
BOX = (30, 10, 70, 70)
SKIN, SKY = (230, 180, 150), (40, 90, 200)


def _req(seed: int = 4, prompt: str = "a sunny beach", **extra: Any) -> InpaintRequest:
    image = Image.new("RGB", SIZE, SKY)
    ImageDraw.Draw(image).ellipse(BOX, fill=SKIN)
    mask = Image.new("L", SIZE, 0)
    ImageDraw.Draw(mask).ellipse(BOX, fill=255)
    values: dict[str, Any] = dict(
        image=image, mask=mask, prompt=prompt, negative_prompt="blurry", seed=seed
    )
    values.update(extra)
    return InpaintRequest(**values)


def _array(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG"
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def _nodes(workflow: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [n["inputs"] for n in workflow.values() if n["class_type"] == kind]


def test_repaints_the_background_and_keeps_the_subject_exactly(
    tmp_path: Path, server: FakeComfyUI
) -> None:
    gen = _gen(tmp_path, server.url, inpaint_steps=7, inpaint_strength=0.9)
    assert can_inpaint(gen)
    req = _req()
    result = gen.inpaint(req)

    out = _array(result.image_png)
    assert out.shape == (SIZE[1], SIZE[0], 3)
    assert result.image is not None and result.image.size == SIZE
    original = np.asarray(req.image, dtype=np.int16)
    mask = np.asarray(req.mask)
    # The fake's "VAE" flips every kept pixel's lowest bit: only the composite makes it exact.
    assert np.array_equal(out[mask == 255], original[mask == 255])
    far = out[:, :20]  # well clear of the subject's feathered edge
    assert np.abs(far - np.array(SKY)).max() > 30, "the background was not repainted"
    assert result.meta["mode"] == "inpaint" and result.meta["backend"] == "comfyui"
    assert result.steps == 7 and result.meta["strength"] == 0.9 and result.seed == 4

    # The protocol: the image up once, the mask up once against it, one prompt, one download.
    assert server.calls["upload"] == 1 and server.calls["upload-mask"] == 1
    assert server.calls["prompt"] == 1 and server.calls["view"] == 1
    workflow = server.prompts[0]
    sampler = _nodes(workflow, "KSampler")[0]
    assert sampler["seed"] == 4 and sampler["steps"] == 7 and sampler["denoise"] == 0.9
    texts = {n["text"] for n in _nodes(workflow, "CLIPTextEncode")}
    assert texts == {"a sunny beach", "blurry"}
    # The server stored the image with the subject mask as its alpha (opaque = keep), at the
    # latent-grid size the backend sent.
    (loaded,) = _nodes(workflow, "LoadImage")
    with Image.open(io.BytesIO(server.inputs[loaded["image"]])) as stored:
        assert stored.mode == "RGBA" and stored.size == (104, 72)
        alpha = np.asarray(stored.getchannel("A"))
    sent = np.asarray(req.mask.resize((104, 72), Image.Resampling.BILINEAR))
    assert np.array_equal(alpha, sent)


def test_the_same_seed_repaints_the_same_other_seeds_and_prompts_differ(
    tmp_path: Path, server: FakeComfyUI
) -> None:
    gen = _gen(tmp_path, server.url)
    first = gen.inpaint(_req(seed=4)).image_png
    assert gen.inpaint(_req(seed=4)).image_png == first
    assert gen.inpaint(_req(seed=5)).image_png != first
    assert gen.inpaint(_req(prompt="a snowy forest")).image_png != first
    # Defaults: the backend's own steps, the whole background re-noised.
    sampler = _nodes(server.prompts[0], "KSampler")[0]
    assert sampler["steps"] == 25 and sampler["denoise"] == 1.0


def test_a_mask_linked_from_the_image_output_is_rejected_as_the_server_does(
    tmp_path: Path, server: FakeComfyUI
) -> None:
    wrong = copy.deepcopy(INPAINT)
    wrong["5"]["inputs"]["mask"] = ["4", 0]  # LoadImage's IMAGE, not its MASK
    with pytest.raises(GeneratorError) as err:
        _gen(tmp_path, server.url, wrong).inpaint(_req())
    assert err.value.kind == "workflow-invalid" and err.value.whole_generation
    assert "Return type mismatch between linked nodes" in err.value.message
    assert "mask, received_type(IMAGE) mismatch input_type(MASK)" in err.value.message


def test_an_inpaint_workflow_without_the_masked_image_stops_the_worker_at_start(
    tmp_path: Path, server: FakeComfyUI
) -> None:
    unmasked = copy.deepcopy(INPAINT)
    unmasked["4"]["inputs"]["image"] = "some-file.png"
    with pytest.raises(ConfigError, match=r"INPAINT_WORKFLOW_PATH=.*masked_image"):
        _gen(tmp_path, server.url, unmasked)
    foreign = copy.deepcopy(INPAINT)
    foreign["4"]["inputs"]["image"] = "{{pose_map}}"  # a generation placeholder
    with pytest.raises(ConfigError, match=r"unknown placeholder\(s\) \['pose_map'\]"):
        _gen(tmp_path, server.url, foreign)


def test_the_probe_checks_the_inpaint_workflow_too(tmp_path: Path, server: FakeComfyUI) -> None:
    _gen(tmp_path, server.url).probe()  # the shipped one runs on a stock server
    custom = copy.deepcopy(INPAINT)
    custom["5"]["class_type"] = "InpaintPlusPlus"
    with pytest.raises(ConfigError) as err:
        _gen(tmp_path, server.url, custom).probe()
    assert "inpaint workflow: node 5: node class 'InpaintPlusPlus' is not installed" in (
        err.value.message
    )
    # A checkpoint missing from the server is named once, not once per workflow.
    server.checkpoints = []
    with pytest.raises(ConfigError) as err:
        _gen(tmp_path, server.url).probe()
    assert err.value.message.count("ckpt_name 'v1-5-pruned-emaonly.safetensors'") == 1


@pytest.mark.parametrize("server", ["hang"], indirect=True)
def test_the_deadline_gives_up_and_takes_the_prompt_back(
    tmp_path: Path, server: FakeComfyUI
) -> None:
    gen = _gen(tmp_path, server.url)
    started = time.monotonic()
    with pytest.raises(GeneratorError) as err:
        gen.inpaint(_req(deadline=time.monotonic() + 1.0))
    assert err.value.transient and err.value.kind == "generator-timeout"
    assert time.monotonic() - started < 20  # the request's deadline, not the 300 s setting
    assert server.calls["queue-delete"] == 1 and server.calls["interrupt"] == 1


@pytest.mark.parametrize("server", ["http-500"], indirect=True)
def test_a_failing_server_is_an_outage(tmp_path: Path, server: FakeComfyUI) -> None:
    with pytest.raises(GeneratorError) as err:
        _gen(tmp_path, server.url).inpaint(_req())
    assert err.value.outage and err.value.kind == "comfyui-unavailable"


@pytest.mark.parametrize("server", ["no-ws"], indirect=True)
def test_polls_history_when_the_websocket_is_refused(tmp_path: Path, server: FakeComfyUI) -> None:
    result = _gen(tmp_path, server.url).inpaint(_req())
    assert result.image is not None and result.image.size == SIZE
    assert server.calls["ws-refused"] == 1 and server.calls["history"] >= 1


def test_empty_inpaint_settings_mean_the_defaults(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, comfyui_inpaint_workflow_path=" ", inpaint_steps="")
    assert settings.comfyui_inpaint_workflow_path is None and settings.inpaint_steps is None
    assert settings.inpaint_strength == 1.0
