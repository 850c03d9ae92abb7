"""``diffusers``: Stable Diffusion 1.5 or SDXL with an OpenPose ControlNet, from local weights.

Weights are either ``save_pretrained`` folders or single-file checkpoints (A1111 / civitai style
``.safetensors`` or ``.ckpt``, loaded with ``from_single_file``). A single file carries weights
only: the component configs (and tokenizers) come from a local diffusers-format config folder
(``POSEGEN_DIFFUSERS_CONFIG_PATH``, ``POSEGEN_DIFFUSERS_CONTROLNET_CONFIG_PATH``), passed as
``config=`` so diffusers never reaches for the hub.

Background repaints (:meth:`DiffusersGenerator.inpaint`) run diffusers' inpainting pipeline
(``StableDiffusionInpaintPipeline`` / ``StableDiffusionXLInpaintPipeline``) built with
``from_pipe`` from the loaded pipeline's own modules: no second copy of the weights, no
ControlNet. A base (4-channel) UNet inpaints by re-imposing the kept region's latents at every
step; the subject's pixels are then put back exactly.

torch and diffusers are imported inside the functions that need them, so ``posegen`` imports
(and its other backends run) without the optional ``posegen[diffusers]`` install. The hub is never
contacted at run time.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from posegen.config import Settings
from posegen.exceptions import ConfigError, GeneratorError
from posegen.generators.base import (
    GenerateRequest,
    GenerateResult,
    InpaintRequest,
    fit_map,
    fit_subject,
    keep_subject,
    timeout_error,
    work_size,
)

_VARIANT_MARK = {"sd15": False, "sdxl": True}  # does model_index.json's class name say "XL"?


#: Single-file checkpoint suffixes ``from_single_file`` reads.
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class DiffusersPaths:
    model: Path
    controlnet: Path
    #: For a single-file model / ControlNet: the folder with its diffusers configs; None for a
    #: ``save_pretrained`` folder (which holds its own).
    model_config: Path | None = None
    controlnet_config: Path | None = None

    @property
    def single_file(self) -> bool:
        return self.model_config is not None


def validate(settings: Settings) -> DiffusersPaths:
    """Check the settings and files before any weight is loaded; ConfigError says what to fix."""
    missing = [m for m in ("torch", "diffusers", "transformers") if not _importable(m)]
    if missing:
        raise ConfigError(
            f"POSEGEN_BACKEND=diffusers needs {', '.join(missing)}: "
            "install posegen[diffusers] "
            "(make install-diffusers, or pip install 'posegen[diffusers]')"
        )
    model, model_config = _weights(
        settings.diffusers_model_path,
        "POSEGEN_DIFFUSERS_MODEL_PATH",
        settings.diffusers_config_path,
        "POSEGEN_DIFFUSERS_CONFIG_PATH",
        "model_index.json",
    )
    controlnet, controlnet_config = _weights(
        settings.diffusers_controlnet_path,
        "POSEGEN_DIFFUSERS_CONTROLNET_PATH",
        settings.diffusers_controlnet_config_path,
        "POSEGEN_DIFFUSERS_CONTROLNET_CONFIG_PATH",
        "config.json",
    )
    index = (model_config or model) / "model_index.json"
    pipeline_class = _json(index).get("_class_name", "")
    want_xl = _VARIANT_MARK[settings.diffusers_variant]
    if ("XL" in str(pipeline_class)) != want_xl:
        raise ConfigError(
            f"POSEGEN_DIFFUSERS_VARIANT={settings.diffusers_variant} but {index} describes a "
            f"{pipeline_class or 'pipeline of unknown class'}"
        )
    cn_config = (controlnet_config or controlnet) / "config.json"
    cn_class = _json(cn_config).get("_class_name", "")
    if cn_class != "ControlNetModel":
        raise ConfigError(
            f"{cn_config.parent} is not a ControlNet folder (its config says {cn_class!r})"
        )
    return DiffusersPaths(model, controlnet, model_config, controlnet_config)


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _weights(
    value: Path | None, env: str, config: Path | None, config_env: str, marker: str
) -> tuple[Path, Path | None]:
    """(weights path, config folder or None): a ``save_pretrained`` folder, or a single file
    with a config folder (the setting, else the file's own folder if it holds ``marker``)."""
    if value is None:
        raise ConfigError(
            f"POSEGEN_BACKEND=diffusers needs {env} (a weights folder or .safetensors file)"
        )
    path = value.expanduser()
    if path.is_dir():
        if not (path / marker).is_file():
            raise ConfigError(
                f"{env}={value} has no {marker}: is it a diffusers (save_pretrained) folder?"
            )
        return path.resolve(), None
    if not path.is_file():
        raise ConfigError(f"{env}={value} is not a folder or a checkpoint file (no such path)")
    if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise ConfigError(
            f"{env}={value} is neither a folder nor a checkpoint file "
            f"({', '.join(SINGLE_FILE_SUFFIXES)})"
        )
    folder = config.expanduser() if config is not None else path.parent
    if not (folder / marker).is_file():
        where = f"{config_env}={config}" if config is not None else f"{path.parent}"
        raise ConfigError(
            f"{env} is a single file, which holds no config: set {config_env} to a folder with "
            f"the diffusers configs ({marker}, no weights needed; {where} has none)"
        )
    return path.resolve(), folder.resolve()


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object")
    return data


@dataclass
class _Loaded:
    txt2img: Any
    img2img: Any
    device: str
    dtype: str
    #: The pipeline objects are not safe to call from two threads at once.
    lock: threading.Lock
    #: The inpainting pipeline, built on first use from ``txt2img``'s modules (under ``lock``).
    inpaint: Any = None


# Weights are loaded once per process and shared by every generator built from the same settings:
# a worker may build handlers more than once (tests, ``posegen generate``), the GPU holds one copy.
_LOADED: dict[tuple[str, str, str, str], _Loaded] = {}
_LOADED_LOCK = threading.Lock()


class DiffusersGenerator:
    """ControlNet(OpenPose) conditioned SD1.5 / SDXL; img2img from the subject when there is one."""

    name = "diffusers"
    #: Repaints backgrounds with diffusers' inpainting pipeline (:meth:`inpaint`).
    can_inpaint = True

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._paths = validate(settings)
        self.max_batch = settings.diffusers_max_batch
        # Load now, at worker start: unreadable weights stop the worker before it claims a job.
        self.load()

    def load(self) -> _Loaded:
        """The process-wide pipeline for these settings, loading it on first use."""
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch

        device = self._settings.diffusers_device or ("cuda" if torch.cuda.is_available() else "cpu")
        variant = self._settings.diffusers_variant
        key = (str(self._paths.model), str(self._paths.controlnet), variant, device)
        with _LOADED_LOCK:
            loaded = _LOADED.get(key)
            if loaded is None:
                loaded = _load(self._paths, variant, device)
                _LOADED[key] = loaded
        return loaded

    def generate(self, req: GenerateRequest) -> GenerateResult:
        """One image (a batch of one)."""
        return self.generate_batch([req])[0]

    def generate_batch(self, reqs: Sequence[GenerateRequest]) -> list[GenerateResult]:
        """Variations of one pose in one pipeline call; per-request seeds keep each reproducible."""
        if not reqs:
            return []
        first = reqs[0]
        same_inputs = all(
            r.subject is first.subject
            and r.pose_map is first.pose_map
            and (r.width, r.height) == (first.width, first.height)
            for r in reqs
        )
        if not same_inputs:
            return [self._run([r])[0] for r in reqs]
        out: list[GenerateResult] = []
        for start in range(0, len(reqs), self.max_batch):
            out.extend(self._run(reqs[start : start + self.max_batch]))
        return out

    def _run(self, reqs: Sequence[GenerateRequest]) -> list[GenerateResult]:
        import torch

        loaded = self.load()
        try:
            with loaded.lock:
                return self._call(loaded, reqs)
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            if len(reqs) > 1:
                # The batch did not fit: one at a time still might.
                return [res for r in reqs for res in self._run([r])]
            raise _out_of_memory() from exc

    def inpaint(self, req: InpaintRequest) -> GenerateResult:
        """The image with its background repainted from the prompt, the subject kept exactly.

        Runs at the nearest multiple-of-8 size (the latent grid), ``POSEGEN_INPAINT_STRENGTH``
        and ``POSEGEN_INPAINT_STEPS`` (default: ``POSEGEN_DIFFUSERS_STEPS``); the output is scaled
        back to the image's size and the subject composited over it with a feathered edge.
        """
        import torch

        loaded = self.load()
        s = self._settings
        steps = s.inpaint_steps or s.diffusers_steps
        width, height = work_size(*req.image.size)
        image, mask = req.image, req.mask
        if (width, height) != image.size:
            image = image.resize((width, height), Image.Resampling.LANCZOS)
            mask = mask.resize((width, height), Image.Resampling.BILINEAR)
        kwargs: dict[str, Any] = {
            "prompt": req.prompt,
            "negative_prompt": req.negative_prompt or "",
            "image": image,
            # diffusers repaints where the mask is white: the background, not the subject.
            "mask_image": ImageOps.invert(mask),
            "width": width,
            "height": height,
            "strength": s.inpaint_strength,
            "num_inference_steps": steps,
            "guidance_scale": s.diffusers_guidance_scale,
            "generator": torch.Generator().manual_seed(req.seed % 2**64),
            "output_type": "pil",
            "callback_on_step_end": _deadline_callback(req.deadline),
        }
        started = time.perf_counter()
        try:
            with loaded.lock:
                pipe = _inpaint_pipeline(loaded, s.diffusers_variant)
                painted = self._pipeline_call(pipe, kwargs)[0]
        except torch.cuda.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise _out_of_memory() from exc
        out = keep_subject(req.image, painted.convert("RGB"), req.mask)
        return GenerateResult(
            image_png=_png(out),
            seed=req.seed,
            prompt=req.prompt,
            steps=steps,
            duration_s=time.perf_counter() - started,
            meta={
                "backend": self.name,
                "variant": s.diffusers_variant,
                "device": loaded.device,
                "dtype": loaded.dtype,
                "mode": "inpaint",
                "guidanceScale": s.diffusers_guidance_scale,
                "strength": s.inpaint_strength,
            },
            image=out,
        )

    def _pipeline_call(self, pipe: Any, kwargs: dict[str, Any]) -> list[Any]:
        """Run ``pipe``; its failures as GeneratorError (out-of-memory passes through)."""
        import torch

        try:
            _injected_fault()
            images: list[Any] = pipe(**kwargs).images
        except _DeadlineExceeded as exc:
            raise timeout_error(
                self.name, self._settings.generator_timeout_seconds, transient=False
            ) from exc
        except (RuntimeError, ValueError) as exc:
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                raise
            raise GeneratorError(
                f"diffusers failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                transient=False,
                kind="generator-failed",
            ) from exc
        return images

    def probe(self) -> None:
        """The breaker's probe while paused after an out-of-memory: give cached blocks back;
        the next claim is the real test (there is nothing else to ask a local GPU)."""
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _call(self, loaded: _Loaded, reqs: Sequence[GenerateRequest]) -> list[GenerateResult]:
        import torch

        s = self._settings
        first = reqs[0]
        width, height = first.width, first.height
        n = len(reqs)
        if first.pose_map is not None:
            control, scale = fit_map(first.pose_map, width, height), 1.0
        else:
            # Text generations have no map: a black map at scale 0 leaves the model unconditioned.
            control, scale = Image.new("RGB", (width, height)), 0.0
        kwargs: dict[str, Any] = {
            "prompt": [r.prompt for r in reqs],
            "negative_prompt": [r.negative_prompt or "" for r in reqs],
            "num_inference_steps": s.diffusers_steps,
            "guidance_scale": s.diffusers_guidance_scale,
            "controlnet_conditioning_scale": scale,
            # CPU generators: the same seed gives the same noise on any device.
            "generator": [torch.Generator().manual_seed(r.seed % 2**64) for r in reqs],
            "output_type": "pil",
            "callback_on_step_end": _deadline_callback(first.deadline),
        }
        if first.subject is not None:
            pipe, mode = loaded.img2img, "img2img"
            kwargs["image"] = [fit_subject(first.subject, width, height)] * n
            kwargs["control_image"] = [control] * n
            kwargs["strength"] = s.diffusers_strength
        else:
            pipe, mode = loaded.txt2img, "txt2img"
            kwargs.update(image=[control] * n, width=width, height=height)
        started = time.perf_counter()
        images = self._pipeline_call(pipe, kwargs)
        elapsed = (time.perf_counter() - started) / n
        meta = {
            "backend": self.name,
            "variant": s.diffusers_variant,
            "device": loaded.device,
            "dtype": loaded.dtype,
            "mode": mode,
            "guidanceScale": s.diffusers_guidance_scale,
            "controlnetScale": scale,
            "batch": n,
        }
        if mode == "img2img":
            meta["strength"] = s.diffusers_strength
        return [
            GenerateResult(
                image_png=_png(img),
                seed=r.seed,
                prompt=r.prompt,
                steps=s.diffusers_steps,
                duration_s=elapsed,
                meta=dict(meta),
                image=img.convert("RGB"),
            )
            for r, img in zip(reqs, images, strict=True)
        ]


class _DeadlineExceeded(Exception):
    pass


def _out_of_memory() -> GeneratorError:
    # Not this generation's fault (another process holds the memory, fragmentation): the
    # worker pauses, gives the generation back and retries after a cool-down.
    return GeneratorError(
        "the GPU ran out of memory", transient=True, outage=True, kind="out-of-memory"
    )


def _inpaint_pipeline(loaded: _Loaded, variant: str) -> Any:
    """The inpainting pipeline sharing ``loaded.txt2img``'s modules, built once (call under
    ``loaded.lock``)."""
    if loaded.inpaint is None:
        import diffusers

        lib: Any = diffusers
        cls = (
            lib.StableDiffusionXLInpaintPipeline
            if variant == "sdxl"
            else lib.StableDiffusionInpaintPipeline
        )
        try:
            # from_pipe hands over the same module objects (no copy) and leaves the ControlNet
            # out. It casts every module to ``dtype`` (float32 unless told): the loaded one, or
            # fp16 weights on a GPU would be cast for both pipelines.
            pipe = cls.from_pipe(loaded.txt2img, dtype=loaded.txt2img.unet.dtype)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise GeneratorError(
                f"diffusers cannot build its inpainting pipeline: {first}",
                transient=False,
                kind="generator-failed",
            ) from exc
        pipe.set_progress_bar_config(disable=True)
        loaded.inpaint = pipe
    return loaded.inpaint


#: Tests only: ``POSEGEN_DIFFUSERS_FAULT_OOM=N`` makes the first N pipeline calls of this process
#: raise CUDA out-of-memory, so outage handling can be tested on a CPU. Never set in production.
FAULT_ENV = "POSEGEN_DIFFUSERS_FAULT_OOM"
_faults_left: int | None = None
_faults_lock = threading.Lock()


def _injected_fault() -> None:
    global _faults_left
    with _faults_lock:
        if _faults_left is None:
            _faults_left = int(os.environ.get(FAULT_ENV, "0") or 0)
        if _faults_left <= 0:
            return
        _faults_left -= 1
    import torch

    raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected by {FAULT_ENV})")


def _deadline_callback(deadline: float | None) -> Any:
    def check(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        # Between denoising steps is the only point where a running pipeline can be stopped.
        if deadline is not None and time.monotonic() > deadline:
            raise _DeadlineExceeded
        return kwargs

    return check


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _load(paths: DiffusersPaths, variant: str, device: str) -> _Loaded:
    import diffusers
    import torch

    # diffusers ships no type hints for these classes.
    lib: Any = diffusers

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    try:
        if paths.controlnet_config is not None:
            controlnet = lib.ControlNetModel.from_single_file(
                str(paths.controlnet),
                config=str(paths.controlnet_config),
                dtype=dtype,
                local_files_only=True,
            )
        else:
            controlnet = lib.ControlNetModel.from_pretrained(
                paths.controlnet, dtype=dtype, local_files_only=True
            )
        pipeline_class = (
            lib.StableDiffusionXLControlNetPipeline
            if variant == "sdxl"
            else lib.StableDiffusionControlNetPipeline
        )
        extra: dict[str, Any] = {"add_watermarker": False} if variant == "sdxl" else {}
        if paths.model_config is not None:
            if variant != "sdxl":
                # A single file has no safety-checker weights; fetching them would go online.
                extra.update(safety_checker=None, requires_safety_checker=False)
            txt2img = pipeline_class.from_single_file(
                str(paths.model),
                config=str(paths.model_config),
                controlnet=controlnet,
                dtype=dtype,
                local_files_only=True,
                **extra,
            )
        else:
            txt2img = pipeline_class.from_pretrained(
                paths.model, controlnet=controlnet, dtype=dtype, local_files_only=True, **extra
            )
        if variant == "sdxl":
            img2img = lib.StableDiffusionXLControlNetImg2ImgPipeline(**txt2img.components)
        else:
            img2img = lib.StableDiffusionControlNetImg2ImgPipeline(
                **txt2img.components,
                requires_safety_checker=txt2img.config.requires_safety_checker,
            )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot load diffusers weights from {paths.model}: {first}") from exc
    # Both pipelines share one set of modules (the constructor takes the same objects): moving
    # one moves both, and the weights sit in memory once.
    txt2img.to(device)
    for pipe in (txt2img, img2img):
        pipe.set_progress_bar_config(disable=True)
    return _Loaded(txt2img, img2img, device, str(dtype).removeprefix("torch."), threading.Lock())
