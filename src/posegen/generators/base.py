"""The one generator Protocol, its request/result types and helpers every backend shares."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from PIL import Image, ImageChops, ImageFilter

from posegen.exceptions import GeneratorError
from posegen.pose import fit_subject as fit_subject  # the subject fit every backend shares
from posegen.pose import letterbox


@dataclass(frozen=True)
class GenerateRequest:
    """One image to make: a subject in a pose, at a size, from a seed."""

    subject: Image.Image | None
    pose_map: Image.Image | None
    prompt: str
    negative_prompt: str | None
    seed: int
    width: int
    height: int
    variation: int = 0
    #: ``time.monotonic()`` value after which the backend must give up (``None`` = no limit).
    deadline: float | None = None

    def seconds_left(self) -> float | None:
        """Seconds until the deadline (never below zero), ``None`` without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())


@dataclass(frozen=True)
class GenerateResult:
    """The image plus what was actually used to make it."""

    image_png: bytes
    seed: int
    prompt: str
    #: Sampler steps used, None when the backend cannot tell (a ComfyUI template's own).
    steps: int | None
    duration_s: float
    meta: dict[str, Any] = field(default_factory=dict)
    #: The decoded image when the backend has it anyway; saves storage a decode.
    image: Image.Image | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class InpaintRequest:
    """Repaint an image's background from a prompt, keeping the subject.

    ``mask`` is the subject: 255 = keep (the subject), 0 = repaint (the background), values
    between are the soft edge. The result has ``image``'s size and, wherever the mask is 255,
    exactly its pixels. Images of another mode are converted and a mask of another size is
    scaled to the image on construction, so a backend always sees RGB + same-size ``L``.
    """

    image: Image.Image
    mask: Image.Image
    prompt: str
    negative_prompt: str | None
    seed: int
    #: ``time.monotonic()`` value after which the backend must give up (``None`` = no limit).
    deadline: float | None = None

    def __post_init__(self) -> None:
        image = self.image if self.image.mode == "RGB" else self.image.convert("RGB")
        mask = self.mask if self.mask.mode == "L" else self.mask.convert("L")
        if mask.size != image.size:
            mask = mask.resize(image.size, Image.Resampling.BILINEAR)
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "mask", mask)

    def seconds_left(self) -> float | None:
        """Seconds until the deadline (never below zero), ``None`` without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())


@runtime_checkable
class Generator(Protocol):
    """A backend: ``posemap``, ``diffusers`` or ``comfyui``."""

    name: str
    #: Most requests :meth:`generate_batch` takes in one call.
    max_batch: int

    def generate(self, req: GenerateRequest) -> GenerateResult:
        """Make one image. Raises :class:`GeneratorError` (``transient`` says retry later)."""
        ...

    def generate_batch(self, reqs: Sequence[GenerateRequest]) -> list[GenerateResult]:
        """Make several images (variations of one pose) in one call, results in order."""
        ...


@runtime_checkable
class Inpainter(Protocol):
    """A backend that can also repaint a background (``can_inpaint = True``)."""

    name: str
    can_inpaint: bool

    def inpaint(self, req: InpaintRequest) -> GenerateResult:
        """The image with its background repainted from ``req.prompt`` and the subject kept
        exactly. Raises :class:`GeneratorError` like :meth:`Generator.generate`."""
        ...


def can_inpaint(generator: object) -> bool:
    """Whether ``generator`` has :meth:`Inpainter.inpaint` (its ``can_inpaint`` attribute)."""
    return bool(getattr(generator, "can_inpaint", False))


def inpaint(generator: object, req: InpaintRequest) -> GenerateResult:
    """``generator.inpaint(req)``; a backend that cannot inpaint raises :class:`GeneratorError`
    ``inpaint-unsupported`` (permanent: retrying on the same backend cannot help). The API
    refuses such requests first (:func:`posegen.backends.check_inpaint`); this is the worker's
    guard for a task that reached a backend without the ability anyway."""
    method = getattr(generator, "inpaint", None)
    if not can_inpaint(generator) or not callable(method):
        raise GeneratorError(
            f"the {getattr(generator, 'name', '?')} backend cannot repaint a background from a "
            "prompt (only diffusers and comfyui can)",
            transient=False,
            kind="inpaint-unsupported",
        )
    result: GenerateResult = method(req)
    return result


class _Single(Protocol):
    def generate(self, req: GenerateRequest) -> GenerateResult: ...


class SequentialBatch:
    """Mixin for backends without a native batch: one call per request."""

    max_batch = 1

    def generate_batch(self: _Single, reqs: Sequence[GenerateRequest]) -> list[GenerateResult]:
        """Run the requests one after another."""
        return [self.generate(r) for r in reqs]


def timeout_error(backend: str, seconds: float, *, transient: bool) -> GeneratorError:
    """The error every backend raises when a call outlives its deadline."""
    return GeneratorError(
        f"{backend} backend gave no result within {seconds:.0f} s",
        transient=transient,
        kind="generator-timeout",
    )


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes of ``image``; low compression because this runs once per pose on the worker."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def fit_map(pose_map: Image.Image, width: int, height: int) -> Image.Image:
    """The pose map at exactly the output size, letterboxed (black bars, aspect kept): a map
    stretched to another aspect shows the model a differently built person."""
    return letterbox(pose_map, width, height)


#: Stable Diffusion works on 8 x 8 pixel latent cells: inpainting runs at a multiple of this.
LATENT_CELL = 8


def work_size(width: int, height: int) -> tuple[int, int]:
    """The nearest size a latent model paints without cropping (multiples of 8, at least 8)."""

    def snap(v: int) -> int:
        return max(LATENT_CELL, (v + LATENT_CELL // 2) // LATENT_CELL * LATENT_CELL)

    return snap(width), snap(height)


def keep_subject(
    original: Image.Image, painted: Image.Image, mask: Image.Image, feather: float | None = None
) -> Image.Image:
    """``painted`` (scaled to ``original``'s size) with the subject of ``original`` put back.

    The subject is kept exactly wherever ``mask`` is 255; the edge is feathered outwards only
    (the mask, or its Gaussian blur where that is larger), so the repainted background fades in
    over ``feather`` pixels (default about 0.3 % of the diagonal, at least 1) and no subject
    pixel is touched. A generator's own pass over the subject (VAE round trip, latent edge) never
    reaches the result.
    """
    size = original.size
    if painted.size != size:
        painted = painted.resize(size, Image.Resampling.LANCZOS)
    if mask.size != size:
        mask = mask.resize(size, Image.Resampling.BILINEAR)
    radius = feather if feather is not None else max(1.0, 0.003 * math.hypot(*size))
    alpha = ImageChops.lighter(mask, mask.filter(ImageFilter.GaussianBlur(radius)))
    return Image.composite(original.convert("RGB"), painted.convert("RGB"), alpha)
