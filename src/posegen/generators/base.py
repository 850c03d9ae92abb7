"""The one generator Protocol, its request/result types and helpers every backend shares."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from PIL import Image

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
