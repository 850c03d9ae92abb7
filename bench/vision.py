"""Vision throughput: photos per second for pose extraction and person segmentation at 512 and
1024 px (longest side), with the helper round trip included and excluded.

For each size and operation, interleaved over the repetitions (medians):

* ``end-to-end``: ``posegen.vision.extract`` / ``segment`` as the API calls them: the upload
  check and decode, the pixels over the pipe, the model, the answer (and the mask scaled back);
* ``helper call``: one request to the already-running helper with pixels decoded beforehand
  (pipe + model);
* ``model only``: the time the helper itself reports around the mediapipe call (round trip
  excluded).

Then the pool: photos per second for pose extraction at 512 px from two threads at once with
``POSEGEN_VISION_HELPERS`` = 1 and = 2 (helpers started beforehand; the two pool sizes
alternate over ``--pool-repeat`` rounds of ``--pool-photos`` photos each; medians and the ratio).

The photo is matplotlib's grace_hopper.jpg (from the vision environment), resized.
Usage: .venv/bin/python bench/vision.py [--repeat 20] [--pool-photos 24] [--pool-repeat 3]
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image

from posegen import vision
from posegen.config import Settings, load_settings
from posegen.vision import client
from posegen.vision.photo import prepare

SIZES = (512, 1024)
OPS = {"pose": vision.extract, "segment": vision.segment}


def _photo(python: Path, side: int) -> bytes:
    found = sorted(python.parent.parent.glob("lib/python3*/site-packages/matplotlib/mpl-data"))
    source = found[0] / "sample_data" / "grace_hopper.jpg"
    with Image.open(source) as im:
        scale = side / max(im.size)
        resized = im.convert("RGB").resize((round(im.width * scale), round(im.height * scale)))
    buf = io.BytesIO()
    resized.save(buf, "JPEG", quality=92)
    return buf.getvalue()


POOL_SIZES = (1, 2)
POOL_THREADS = 2


def _pool_round(settings: Settings, photo: bytes, count: int) -> float:
    """Photos per second for ``count`` extractions shared by two threads."""

    def worker(n: int) -> None:
        for _ in range(n):
            vision.extract(settings, photo)

    shares = [count // POOL_THREADS + (i < count % POOL_THREADS) for i in range(POOL_THREADS)]
    started = time.perf_counter()
    with ThreadPoolExecutor(POOL_THREADS) as threads:
        list(threads.map(worker, shares))
    return count / (time.perf_counter() - started)


def pool_figures(settings: Settings, photo: bytes, count: int, rounds: int) -> dict[str, Any]:
    pools = {
        size: settings.model_copy(update={"vision_helpers": size, "vision_timeout_seconds": 120.0})
        for size in POOL_SIZES
    }
    for size, sized in pools.items():  # every helper of both pools started and warm
        _pool_round(sized, photo, 2 * size)
        assert len(client.helper_for(sized).pids) == size
    rates: dict[int, list[float]] = {size: [] for size in POOL_SIZES}
    for index in range(rounds):
        order = POOL_SIZES if index % 2 == 0 else POOL_SIZES[::-1]
        for size in order:
            rates[size].append(_pool_round(pools[size], photo, count))
    for sized in pools.values():
        client.helper_for(sized).close()
    medians = {size: statistics.median(values) for size, values in rates.items()}
    ratio = medians[2] / medians[1]
    print(
        f"\npool: pose at 512 px, {POOL_THREADS} threads, {count} photos a round, {rounds} rounds"
    )
    for size in POOL_SIZES:
        runs = ", ".join(f"{r:.2f}" for r in rates[size])
        print(f"  {size} helper(s): {medians[size]:.2f} photos/s median ({runs})")
    print(f"  2 helpers / 1 helper = {ratio:.2f}x")
    return {
        "poolPhotosPerSecond": {str(k): round(v, 3) for k, v in medians.items()},
        "poolRuns": {str(k): [round(r, 3) for r in v] for k, v in rates.items()},
        "poolRatio": round(ratio, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--pool-photos", type=int, default=24)
    parser.add_argument("--pool-repeat", type=int, default=3)
    args = parser.parse_args()
    settings = load_settings(data_dir=Path(tempfile.mkdtemp()), vision_max_side=max(SIZES))
    python = client.helper_python(settings)
    if python is None:
        sys.exit("the vision environment is missing: run `make install-vision`")
    helper = client.helper_for(settings)
    photos = {side: _photo(python, side) for side in SIZES}
    prepared = {side: prepare(settings, data) for side, data in photos.items()}
    samples: dict[tuple[int, str, str], list[float]] = {}

    def record(key: tuple[int, str, str], seconds: float) -> None:
        samples.setdefault(key, []).append(seconds)

    for side in SIZES:  # warm up: helper start, each graph built once
        for fn in OPS.values():
            for _ in range(3):
                fn(settings, photos[side])
    for _ in range(args.repeat):
        for side in SIZES:
            for op, fn in OPS.items():
                started = time.perf_counter()
                fn(settings, photos[side])
                record((side, op, "end-to-end"), time.perf_counter() - started)
                photo = prepared[side]
                header = {"op": op, "width": photo.sent_width, "height": photo.sent_height}
                started = time.perf_counter()
                answer, _ = helper.call(header, photo.rgb)
                record((side, op, "helper call"), time.perf_counter() - started)
                record((side, op, "model only"), float(answer["ms"]) / 1000.0)
    helper.close()

    figures: dict[str, Any] = {"repeat": args.repeat, "versions": helper.versions, "rows": []}
    print(f"{'size':>5} {'op':<8} {'how':<12} {'median ms':>10} {'photos/s':>9}")
    for (side, op, how), values in samples.items():
        median = statistics.median(values)
        print(f"{side:>5} {op:<8} {how:<12} {median * 1000:>10.1f} {1 / median:>9.1f}")
        row = {"size": side, "op": op, "how": how, "medianMs": round(median * 1000, 2)}
        figures["rows"].append({**row, "photosPerSecond": round(1 / median, 2)})
    for side in SIZES:
        for op in OPS:
            e2e = statistics.median(samples[(side, op, "end-to-end")])
            model = statistics.median(samples[(side, op, "model only")])
            ratio = e2e / model
            print(f"{side} {op}: end-to-end / model only = {ratio:.2f}x")
            figures[f"ratio_{op}_{side}"] = round(ratio, 3)
    if args.pool_repeat > 0:
        figures.update(pool_figures(settings, photos[512], args.pool_photos, args.pool_repeat))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
