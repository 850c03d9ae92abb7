"""Vision throughput: photos per second for pose extraction and person segmentation at 512 and
1024 px (longest side), with the helper round trip included and excluded.

For each size and operation, interleaved over the repetitions (medians):

* ``end-to-end``: ``posegen.vision.extract`` / ``segment`` as the API calls them: the upload
  check and decode, the pixels over the pipe, the model, the answer (and the mask scaled back);
* ``helper call``: one request to the already-running helper with pixels decoded beforehand
  (pipe + model);
* ``model only``: the time the helper itself reports around the mediapipe call (round trip
  excluded).

The photo is matplotlib's grace_hopper.jpg (from the vision environment), resized.
Usage: .venv/bin/python bench/vision.py [--repeat 20]
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
from pathlib import Path
from typing import Any

from PIL import Image

from posegen import vision
from posegen.config import load_settings
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
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
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
