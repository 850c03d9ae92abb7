"""Generator backends behind one Protocol, chosen by ``POSEGEN_BACKEND``."""

from __future__ import annotations

from posegen.config import Settings
from posegen.exceptions import ConfigError
from posegen.generators.base import (
    GenerateRequest,
    GenerateResult,
    Generator,
    SequentialBatch,
)

__all__ = [
    "GenerateRequest",
    "GenerateResult",
    "Generator",
    "SequentialBatch",
    "make_generator",
]


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
