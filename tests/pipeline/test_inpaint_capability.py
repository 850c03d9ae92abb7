"""Which backends repaint backgrounds, and the helpers every inpainting backend shares."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from posegen import backends
from posegen.config import load_settings
from posegen.exceptions import InvalidInput
from posegen.generators import InpaintRequest, can_inpaint, make_generator
from posegen.generators.base import keep_subject, work_size
from posegen.generators.comfyui import ComfyUIGenerator
from posegen.generators.diffusers_backend import DiffusersGenerator
from posegen.generators.posemap import PosemapGenerator


def test_the_capability_by_name_is_the_generators_own() -> None:
    classes = {"posemap": PosemapGenerator, "diffusers": DiffusersGenerator}
    classes["comfyui"] = ComfyUIGenerator
    for name, cls in classes.items():
        assert backends.supports_inpaint(name) is can_inpaint(cls), name
        # A backend that says it can must have the method.
        assert callable(getattr(cls, "inpaint", None)) is can_inpaint(cls), name
    assert not backends.supports_inpaint("noop")
    assert backends.INPAINT_BACKENDS == {"diffusers", "comfyui"}


def test_posemap_the_embedded_default_cannot_inpaint(tmp_path: Path) -> None:
    gen = make_generator(load_settings(data_dir=tmp_path))
    assert gen.name == "posemap" and not can_inpaint(gen)


@pytest.mark.parametrize("backend", ["posemap", "noop", "nonsense"])
def test_a_backend_that_cannot_inpaint_is_refused_with_its_own_problem(backend: str) -> None:
    with pytest.raises(InvalidInput) as err:
        backends.check_inpaint(backend)
    assert err.value.kind == "background-prompt-unsupported" and err.value.http_status == 422
    assert repr(backend) in err.value.message and "diffusers or comfyui" in err.value.message


@pytest.mark.parametrize("backend", ["diffusers", "comfyui"])
def test_a_backend_that_can_inpaint_passes(backend: str) -> None:
    backends.check_inpaint(backend)  # no error


def _subject(size: tuple[int, int] = (70, 50)) -> tuple[Image.Image, Image.Image]:
    image = Image.new("RGB", size, (40, 90, 200))
    ImageDraw.Draw(image).ellipse((20, 8, 48, 46), fill=(230, 180, 150))
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse((20, 8, 48, 46), fill=255)
    return image, mask


def test_a_request_normalises_modes_and_the_mask_size() -> None:
    image, mask = _subject()
    req = InpaintRequest(
        image=image.convert("RGBA"),
        mask=mask.resize((35, 25)).convert("RGB"),
        prompt="a beach",
        negative_prompt=None,
        seed=3,
        deadline=time.monotonic() + 60,
    )
    assert req.image.mode == "RGB" and req.mask.mode == "L"
    assert req.mask.size == req.image.size == (70, 50)
    left = req.seconds_left()
    assert left is not None and 50 < left <= 60
    assert InpaintRequest(image, mask, "x", None, 1).seconds_left() is None


def test_keep_subject_keeps_every_subject_pixel_and_feathers_outwards() -> None:
    image, mask = _subject()
    painted = Image.new("RGB", (35, 25), (10, 200, 10))  # another size: scaled to the image
    out = np.asarray(keep_subject(image, painted, mask, feather=2.0), dtype=np.int16)
    original = np.asarray(image, dtype=np.int16)
    m = np.asarray(mask)
    assert np.array_equal(out[m == 255], original[m == 255])
    # Far from the subject: the painted background as it is.
    assert (out[:, :10] == (10, 200, 10)).all()
    # Just outside the subject the edge is a blend of both, neither one alone.
    assert m[27, 49] == 0 and m[27, 48] == 255  # the ellipse's right edge on its middle row
    edge = out[27, 49]
    assert not np.array_equal(edge, (10, 200, 10)) and not np.array_equal(edge, original[27, 49])


@pytest.mark.parametrize(
    ("size", "expected"),
    [((64, 64), (64, 64)), ((100, 75), (104, 72)), ((3, 5), (8, 8)), ((513, 515), (512, 512))],
)
def test_work_size_is_the_nearest_latent_grid(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert work_size(*size) == expected


def test_the_worker_guard_refuses_a_backend_that_cannot_inpaint(tmp_path: Path) -> None:
    from posegen.exceptions import GeneratorError
    from posegen.failures import public_message
    from posegen.generators import inpaint

    image, mask = _subject()
    with pytest.raises(GeneratorError) as err:
        inpaint(PosemapGenerator(), InpaintRequest(image, mask, "a beach", None, 1))
    assert err.value.kind == "inpaint-unsupported" and not err.value.transient
    assert "posemap" in err.value.message
    assert public_message("inpaint-unsupported") == (
        "This image backend cannot paint a background from a prompt."
    )

    class Painter:
        name = "painter"
        can_inpaint = True

        def inpaint(self, req: InpaintRequest) -> object:
            return ("painted", req.seed)

    assert inpaint(Painter(), InpaintRequest(image, mask, "a beach", None, 9)) == ("painted", 9)


def test_a_worker_lends_its_generator_to_background_repaints(tmp_path: Path) -> None:
    """A worker's background repaints use the generator its pipeline made (one set of weights
    per process), and a later pipeline in the same process does not replace it."""
    from posegen.backgrounds import flow
    from posegen.worker.pipeline import PipelineHandler

    settings = load_settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path}/p.db")
    flow.set_generator(settings.backend, None)
    try:
        first = PipelineHandler(settings)
        assert flow._generator_for(settings) is first.generator
        PipelineHandler(settings)
        assert flow._generator_for(settings) is first.generator
    finally:
        flow.set_generator(settings.backend, None)
