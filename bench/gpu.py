"""The diffusers backend's throughput: images per second and seconds per pose for SD1.5 and SDXL
at 512 and 1024, with the variations of one pose batched (``POSEGEN_DIFFUSERS_MAX_BATCH``).

On a CUDA machine, point it at real weights (folders or single-file checkpoints):

    .venv/bin/python bench/gpu.py \\
        --sd15 ~/models/sd15/v1-5-pruned-emaonly.safetensors --sd15-config ~/models/sd15-config \\
        --sd15-controlnet ~/models/control_v11p_sd15_openpose \\
        --sdxl ~/models/sdxl-base --sdxl-controlnet ~/models/controlnet-openpose-sdxl \\
        --variations 4 --batches 1,4 --steps 25

Without CUDA (or with ``--tiny``) it builds tiny random SD1.5 / SDXL weights (the test suite's)
and runs them on the CPU at small sizes: the figures then measure posegen's pipeline around the
model (batching, encoding, conversion), not what a real model costs, and the output says so.
Ends with one JSON line like the other benchmarks.
"""

from __future__ import annotations

import sys

# bench/queue.py shadows the standard library's ``queue`` (torch and psycopg import it): search
# this folder last.
sys.path.append(sys.path.pop(0))

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from posegen.config import load_settings
from posegen.controlnet import render_keypoints
from posegen.generators import GenerateRequest, make_generator

STANDING = [
    [0.5, 0.14], [0.5, 0.25], [0.4, 0.25], [0.37, 0.4], [0.36, 0.55],
    [0.6, 0.25], [0.63, 0.4], [0.64, 0.55], [0.44, 0.55], [0.44, 0.73],
    [0.44, 0.9], [0.56, 0.55], [0.56, 0.73], [0.56, 0.9], [0.48, 0.12],
    [0.52, 0.12], [0.46, 0.13], [0.54, 0.13],
]  # fmt: skip


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    for v in ("sd15", "sdxl"):
        ap.add_argument(f"--{v}", type=Path, help=f"{v} weights: folder or single file")
        ap.add_argument(f"--{v}-config", type=Path, help="config folder for a single file")
        ap.add_argument(f"--{v}-controlnet", type=Path, help="OpenPose ControlNet: folder/file")
        ap.add_argument(f"--{v}-controlnet-config", type=Path, help="its config folder")
    ap.add_argument("--variants", default="sd15,sdxl")
    ap.add_argument("--sizes", default=None, help="square sides (default 512,1024; tiny: 64,128)")
    ap.add_argument("--batches", default="1,4", help="variations per pipeline call")
    ap.add_argument("--variations", type=int, default=4, help="images per pose")
    ap.add_argument("--poses", type=int, default=2, help="poses timed per configuration")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default 25; tiny 2)")
    ap.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if any)")
    ap.add_argument("--tiny", action="store_true", help="tiny random weights even on a GPU")
    return ap.parse_args()


def _tiny_weights(root: Path, variant: str) -> dict[str, Path]:
    # The test suite's tiny model builder: same layout as real weights, random values.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "pipeline"))
    from pipeline_tiny_models import build  # type: ignore[import-not-found]

    model, controlnet = build(root, variant)
    return {"model": model, "controlnet": controlnet}


def _settings(args: argparse.Namespace, variant: str, paths: dict[str, Path], batch: int) -> Any:
    return load_settings(
        data_dir=Path(tempfile.gettempdir()) / "posegen-bench-gpu",
        backend="diffusers",
        diffusers_variant=variant,
        diffusers_model_path=paths["model"],
        diffusers_controlnet_path=paths["controlnet"],
        diffusers_config_path=paths.get("config"),
        diffusers_controlnet_config_path=paths.get("controlnet_config"),
        diffusers_steps=args.steps,
        diffusers_device=args.device,
        diffusers_max_batch=batch,
    )


def _run_pose(gen: Any, size: int, variations: int, seed: int) -> float:
    pose_map = render_keypoints(STANDING, size, size)
    reqs = [
        GenerateRequest(
            subject=None,
            pose_map=pose_map,
            prompt="a person standing, studio photo, full body",
            negative_prompt="blurry",
            seed=seed + i,
            width=size,
            height=size,
            variation=i,
        )
        for i in range(variations)
    ]
    started = time.perf_counter()
    results = gen.generate_batch(reqs)
    elapsed = time.perf_counter() - started
    assert len(results) == variations
    return elapsed


def main() -> None:
    args = _args()
    import torch

    cuda = torch.cuda.is_available()
    tiny = args.tiny or not cuda
    args.device = args.device or ("cuda" if cuda else "cpu")
    args.steps = args.steps or (2 if tiny else 25)
    sizes = [int(s) for s in (args.sizes or ("64,128" if tiny else "512,1024")).split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    gpu = torch.cuda.get_device_name(0) if cuda else None
    if tiny:
        print(
            f"{'CPU' if not cuda else gpu}: TINY RANDOM MODELS at {sizes} px, {args.steps} steps - "
            "these figures measure posegen around the model, not a real SD1.5/SDXL",
            flush=True,
        )
    rows = [("variant", "size", "batch", "images/s", "s/pose", "s/image", "poses")]
    figures: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant in variants:
            if tiny:
                paths = _tiny_weights(Path(tmp) / variant, variant)
            else:
                model = getattr(args, variant)
                controlnet = getattr(args, f"{variant}_controlnet")
                if model is None or controlnet is None:
                    print(f"skipping {variant}: give --{variant} and --{variant}-controlnet")
                    continue
                paths = {"model": model, "controlnet": controlnet}
                for key in ("config", "controlnet_config"):
                    if (value := getattr(args, f"{variant}_{key}")) is not None:
                        paths[key] = value
            for batch in batches:
                gen = make_generator(_settings(args, variant, paths, batch))
                for size in sizes:
                    try:
                        _run_pose(gen, size, min(args.variations, batch), seed=1)  # warm-up
                        times = [
                            _run_pose(gen, size, args.variations, seed=100 * p)
                            for p in range(args.poses)
                        ]
                    except Exception as exc:  # out of memory at 1024 on a small card, ...
                        print(f"{variant} {size}px batch {batch}: {exc}", flush=True)
                        continue
                    per_pose = statistics.median(times)
                    images = args.variations * len(times)
                    ips = images / sum(times)
                    rows.append(
                        (
                            variant,
                            str(size),
                            str(batch),
                            f"{ips:.2f}",
                            f"{per_pose:.2f}",
                            f"{1 / ips:.3f}",
                            str(len(times)),
                        )
                    )
                    figures.append(
                        {
                            "variant": variant,
                            "size": size,
                            "batch": batch,
                            "variations": args.variations,
                            "imagesPerSecond": round(ips, 3),
                            "secondsPerPose": round(per_pose, 3),
                        }
                    )
                    print(f"{variant} {size}px batch {batch}: {ips:.2f} images/s", flush=True)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    summary = {
        "bench": "gpu",
        "device": args.device,
        "gpu": gpu,
        "tiny": tiny,
        "steps": args.steps,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "results": figures,
    }
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
