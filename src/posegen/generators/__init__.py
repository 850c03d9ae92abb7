"""Generator backends behind one Protocol, chosen by ``POSEGEN_BACKEND``."""

from __future__ import annotations

from posegen.config import Settings
from posegen.exceptions import ConfigError
from posegen.generators.base import (
    GenerateRequest,
    GenerateResult,
    Generator,
    Inpainter,
    InpaintRequest,
    SequentialBatch,
    can_inpaint,
    inpaint,
)

__all__ = [
    "GenerateRequest",
    "GenerateResult",
    "Generator",
    "InpaintRequest",
    "Inpainter",
    "SequentialBatch",
    "can_inpaint",
    "inpaint",
    "make_generator",
    "model_id",
]


def model_id(settings: Settings) -> str | None:
    """The model a worker with these settings serves, as generations and results record it.

    The weights' file or folder name (``diffusers``), the checkpoint the workflow asks ComfyUI
    for (``comfyui``); ``None`` for backends without a model. Computed from settings alone, so
    the API and ``posegen worker`` agree without loading anything.
    """
    if settings.backend == "diffusers" and settings.diffusers_model_path is not None:
        return settings.diffusers_model_path.expanduser().name[:200] or None
    if settings.backend == "comfyui":
        return settings.comfyui_checkpoint[:200] or None
    return None


def make_generator(settings: Settings) -> Generator:
    """The backend the settings name, with its settings checked now (ConfigError says what's wrong).

    Called once at worker start so a misconfigured worker fails before it claims anything.
    """
    backend = settings.backend
    if backend == "posemap":
        from posegen.generators.posemap import PosemapGenerator

        return PosemapGenerator()
    if backend == "diffusers":
        from posegen.generators.diffusers_backend import DiffusersGenerator

        return DiffusersGenerator(settings)
    if backend == "comfyui":
        from posegen.generators.comfyui import ComfyUIGenerator

        return ComfyUIGenerator(settings)
    raise ConfigError(
        f"POSEGEN_BACKEND={backend} has no image generator: use posemap, diffusers or comfyui"
    )
