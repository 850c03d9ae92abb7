"""``posegen models check``: is the configured model usable, and how fast is it?

Loads the backend exactly as a worker would (settings, files, weights), then renders one tiny
image at 1 step and at 3 steps from a fixed pose map: the difference is the time per denoising
step, the 1-step time is what every image costs on top (text encoding, VAE decode, transfer).
Any problem is a :class:`~posegen.exceptions.PosegenError` with one line that says what to fix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from posegen.config import Settings
from posegen.exceptions import PosegenError

#: The probe pose (COCO-18, normalised): a person standing, arms down.
_PROBE = [
    [0.5, 0.14], [0.5, 0.25], [0.4, 0.25], [0.37, 0.4], [0.36, 0.55],
    [0.6, 0.25], [0.63, 0.4], [0.64, 0.55], [0.44, 0.55], [0.44, 0.73],
    [0.44, 0.9], [0.56, 0.55], [0.56, 0.73], [0.56, 0.9], [0.48, 0.12],
    [0.52, 0.12], [0.46, 0.13], [0.54, 0.13],
]  # fmt: skip


@dataclass
class ModelReport:
    backend: str
    model: str | None
    #: What was found, in the order it was checked: (what, detail).
    found: list[tuple[str, str]] = field(default_factory=list)
    device: str | None = None
    dtype: str | None = None
    size: tuple[int, int] = (0, 0)
    one_step_seconds: float | None = None
    seconds_per_step: float | None = None
    preview: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.model,
            "found": [{"what": w, "detail": d} for w, d in self.found],
            "device": self.device,
            "dtype": self.dtype,
            "size": list(self.size),
            "oneStepSeconds": self.one_step_seconds,
            "secondsPerStep": self.seconds_per_step,
            "preview": self.preview,
        }


def check_model(settings: Settings, width: int = 256, height: int = 256) -> ModelReport:
    """Validate the configured backend's model and time it; raises PosegenError on a problem."""
    from posegen.generators import model_id

    report = ModelReport(settings.serving_backend, model_id(settings))
    if settings.serving_backend == "posemap":
        report.preview = True
        report.found.append(("model", "none: posemap draws skeleton previews, it has no weights"))
        return report
    if settings.serving_backend == "diffusers":
        _diffusers_files(settings, report)
    elif settings.serving_backend == "comfyui":
        report.found.append(("server", str(settings.comfyui_url)))
        report.found.append(("checkpoint", settings.comfyui_checkpoint))
        report.found.append(("controlnet", settings.comfyui_controlnet))
    one = _timed(settings, 1, width, height, report)
    three = _timed(settings, 3, width, height, report)
    report.size = (width, height)
    report.one_step_seconds = round(one, 3)
    report.seconds_per_step = round(max(three - one, 0.0) / 2, 3)
    return report


def _diffusers_files(settings: Settings, report: ModelReport) -> None:
    from posegen.generators.diffusers_backend import validate

    paths = validate(settings)  # ConfigError with the setting to fix
    for what, path, config in (
        ("model", paths.model, paths.model_config),
        ("controlnet", paths.controlnet, paths.controlnet_config),
    ):
        kind = "single file" if config is not None else "save_pretrained folder"
        report.found.append((what, f"{path} ({kind}, {_size(path)})"))
        if config is not None:
            report.found.append((f"{what} config", str(config)))
    report.found.append(("variant", settings.diffusers_variant))


def _size(path: Path) -> str:
    total: float = (
        path.stat().st_size
        if path.is_file()
        else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    )
    for unit in ("B", "KB", "MB", "GB"):
        if total < 1024 or unit == "GB":
            return f"{total:.0f} {unit}" if unit == "B" else f"{total:.1f} {unit}"
        total /= 1024
    return f"{total:.1f} GB"  # pragma: no cover - the loop always returns


def _timed(settings: Settings, steps: int, width: int, height: int, report: ModelReport) -> float:
    from posegen.controlnet import render_keypoints
    from posegen.generators import GenerateRequest, make_generator

    update = {"diffusers_steps": steps} if settings.backend == "diffusers" else {}
    if settings.backend == "comfyui":
        update = {"comfyui_steps": steps}
    probe_settings = settings.model_copy(update=update)
    generator = make_generator(probe_settings)  # weights load once per process (shared cache)
    req = GenerateRequest(
        subject=None,
        pose_map=render_keypoints(_PROBE, width, height),
        prompt="a person standing, full body, plain background",
        negative_prompt=None,
        seed=1,
        width=width,
        height=height,
        deadline=time.monotonic() + settings.generator_timeout_seconds,
    )
    started = time.perf_counter()
    try:
        result = generator.generate(req)
    except PosegenError as exc:
        raise PosegenError(
            f"smoke render ({steps} step{'s' if steps > 1 else ''}) failed: {exc.message}",
            kind="model-check",
        ) from exc
    finally:
        close = getattr(generator, "close", None)
        if callable(close):
            close()
    elapsed = time.perf_counter() - started
    if result.image is not None and result.image.size != (width, height):
        raise PosegenError(
            f"smoke render gave {result.image.size[0]}x{result.image.size[1]}, "
            f"not {width}x{height}",
            kind="model-check",
        )
    report.device = result.meta.get("device", report.device)
    report.dtype = result.meta.get("dtype", report.dtype)
    return elapsed
