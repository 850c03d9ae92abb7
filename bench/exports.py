"""Exports per second per worker: the whole format table on 1024x1024 results, three renderers.

1. Speed. Rivals, each in its own child process on one thread (a worker's share):
   ``pillow`` (posegen's implementation, ``posegen.exports.render_exports``), ``vips`` (the same
   frames, fills and encoding options through libvips: ``pip install pyvips pyvips-binary``, or
   Debian's ``libvips42`` with ``pip install pyvips``; ``VIPS_CONCURRENCY=1``) and
   ``pillow-simd`` (posegen's code on Pillow-SIMD, from a separate virtualenv given by
   ``--simd-python``; Pillow-SIMD replaces Pillow, so it cannot share the project's
   environment). A missing rival is reported and skipped. Each repetition gives every rival the
   same pose (rotating through the library), in alternating order, for three groups timed
   apart: ``social`` (the social and marketplace formats: the 0.5 s goal), ``print`` (A4 and
   6x4 at 300 dpi) and ``original``. Medians, ratios to ``pillow``.
2. Cost relative to a pose's own time: the default ``posemap`` backend's pose (draw the map at
   1024x1024, encode the PNG result), timed in the same children; and, for diffusion backends,
   the exports as a share of ``--pose-seconds`` (a GPU pose's time, given, not measured here).
3. Framing (``--framing``): for every library pose and every format, on 1024x1024, 768x1152 and
   1152x768 results, the (pose, format) pairs where a visible keypoint is cut or within 2 % of
   the edge: the original app's centre crop against posegen's framing.

The results are synthetic photographs: a smooth random colour field, grain, and the pose's map
drawn on top (a black map alone would make JPEG encoding unrealistically cheap).

Usage: .venv/bin/python bench/exports.py [--reps 7] [--simd-python /path/venv/bin/python]
       .venv/bin/python bench/exports.py --framing
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIZE = (1024, 1024)
GROUPS = ("social", "print", "original")
MIN_MARGIN = 0.02


# --- shared by the parent and the children --------------------------------------------------


def _formats_by_group() -> dict[str, list[Any]]:
    from posegen.exports import builtin_formats

    formats = list(builtin_formats().values())
    return {
        "social": [f for f in formats if f.size is not None and not f.is_print],
        "print": [f for f in formats if f.is_print],
        "original": [f for f in formats if f.size is None],
    }


def _results(count: int) -> list[tuple[bytes, dict[str, Any]]]:
    """``count`` synthetic 1024x1024 results (PNG bytes) with the poses they were made from."""
    import numpy as np
    from PIL import Image

    from posegen.controlnet.render import render_pose
    from posegen.library import builtin_library
    from posegen.pose import parse_pose

    _, poses = builtin_library()
    rng = np.random.default_rng(7)
    out = []
    for index in range(count):
        pose = poses[(index * 7) % len(poses)].keypoints
        field = Image.fromarray(rng.integers(30, 220, (8, 8, 3), dtype=np.uint8), "RGB")
        base = np.asarray(field.resize(SIZE, Image.Resampling.BICUBIC), dtype=np.int16)
        grain = rng.normal(0, 6, (*SIZE[::-1], 3)).astype(np.int16)
        picture = np.clip(base + grain, 0, 255).astype(np.uint8)
        drawn = np.asarray(render_pose(parse_pose(pose), *SIZE))
        mask = drawn.any(axis=2)
        picture[mask] = drawn[mask]
        buf = io.BytesIO()
        Image.fromarray(picture, "RGB").save(buf, "PNG")
        out.append((buf.getvalue(), pose))
    return out


# --- the children ---------------------------------------------------------------------------


def _vips_renderer() -> Any:
    """The same frames (posegen.exports.framing), fills and file options through libvips."""
    import pyvips

    from posegen.exports.framing import figure, frame_for

    pyvips.cache_set_max(0)

    def fill(fmt: Any, img: Any) -> Any:
        w, h = fmt.size
        if fmt.fill == "solid":
            c = fmt.fill_color
            rgb = [int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16)]
            return (pyvips.Image.black(w, h, bands=3) + rgb).cast("uchar")
        sw, sh = max(1, w // 8), max(1, h // 8)
        small = img.thumbnail_image(sw, height=sh, crop="centre")
        small = small.gaussblur(3.0).linear(0.8, 0)
        return small.resize(w / sw, vscale=h / sh, kernel="linear").cast("uchar")

    def compose(img: Any, frame: Any, fmt: Any) -> Any:
        out_w, out_h = fmt.size
        sx, sy = out_w / frame.width, out_h / frame.height
        dx0, dy0 = max(0, round(-frame.left * sx)), max(0, round(-frame.top * sy))
        dx1 = min(out_w, round((img.width - frame.left) * sx))
        dy1 = min(out_h, round((img.height - frame.top) * sy))
        x0 = max(0, int(frame.left + dx0 / sx))
        y0 = max(0, int(frame.top + dy0 / sy))
        x1 = min(img.width, int(frame.left + dx1 / sx + 0.999))
        y1 = min(img.height, int(frame.top + dy1 / sy + 0.999))
        piece = img.crop(x0, y0, x1 - x0, y1 - y0)
        kernel = "lanczos3" if sx < 1 else "cubic"
        piece = piece.resize((dx1 - dx0) / piece.width, vscale=(dy1 - dy0) / piece.height,
                             kernel=kernel)  # fmt: skip
        piece = piece.crop(0, 0, min(piece.width, dx1 - dx0), min(piece.height, dy1 - dy0))
        if (dx0, dy0, dx1, dy1) == (0, 0, out_w, out_h):
            return piece
        return fill(fmt, img).insert(piece, dx0, dy0)

    def encode(pic: Any, fmt: Any) -> bytes:
        if fmt.file_type == "jpeg":
            data: bytes = pic.jpegsave_buffer(
                Q=fmt.quality,
                interlace=True,
                optimize_coding=True,
                subsample_mode="on",
                keep="none",
                profile="srgb",
            )
            return data
        if fmt.dpi is not None:
            pic = pic.copy(xres=fmt.dpi / 25.4, yres=fmt.dpi / 25.4)
        data = pic.pngsave_buffer(compression=6, filter="all", keep="none", profile="srgb")
        return data

    def render(data: bytes, pose: Any, formats: list[Any]) -> dict[str, bytes]:
        img = pyvips.Image.new_from_buffer(data, "")
        if img.hasalpha():
            img = img.flatten(background=[0, 0, 0])
        img = img.copy_memory()
        fig = figure(pose, (img.width, img.height))
        files: dict[tuple[Any, ...], bytes] = {}
        out = {}
        for fmt in formats:
            frame = None if fmt.size is None else frame_for((img.width, img.height), fig, fmt)
            key = (fmt.size, frame, fmt.fill, fmt.fill_color, fmt.file_type, fmt.quality, fmt.dpi)
            if key not in files:
                files[key] = encode(img if frame is None else compose(img, frame, fmt), fmt)
            out[fmt.name] = files[key]
        return out

    return render


def child(rival: str, data_path: str) -> None:
    """Answer ``GROUP INDEX`` lines with ``{"seconds", "bytes"}``; ``pose INDEX`` times the
    posemap pose (map at 1024x1024 and its PNG; ``pillow`` only: it needs the project's
    environment, the other children only Pillow or pyvips)."""
    from PIL import Image

    if rival == "vips":
        render = _vips_renderer()
    else:
        from posegen.exports import render_exports as render
    groups = _formats_by_group()
    results = [
        (bytes.fromhex(r["png"]), r["pose"]) for r in json.loads(Path(data_path).read_text())
    ]
    render(results[0][0], results[0][1], groups["social"])  # warm up (imports, profiles)
    info = {"pillow": Image.__version__}
    if rival == "vips":
        import pyvips

        info["vips"] = pyvips.version(0), pyvips.version(1), pyvips.version(2)
    print(json.dumps({"ready": True, "info": info}), flush=True)
    for line in sys.stdin:
        what, index = line.split()
        data, pose = results[int(index) % len(results)]
        start = time.perf_counter()
        if what == "pose":
            from posegen.controlnet.render import render_pose
            from posegen.pose import parse_pose

            buf = io.BytesIO()
            render_pose(parse_pose(pose), *SIZE).save(buf, "PNG")
            sizes = {"map": len(buf.getvalue())}
        else:
            files = render(data, pose, groups[what])
            sizes = {name: len(b) for name, b in files.items()}
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "bytes": sizes}), flush=True)


# --- the parent -----------------------------------------------------------------------------


class Rival:
    def __init__(self, name: str, python: str, data_path: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "VIPS_CONCURRENCY": "1",
               "OMP_NUM_THREADS": "1"}  # fmt: skip
        self.name = name
        self.proc = subprocess.Popen(
            [python, __file__, "--child", name, "--data", data_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        hello = self._read()
        self.info = hello.get("info", {})

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"rival {self.name} exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def run(self, what: str, index: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{what} {index}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def speed(args: argparse.Namespace) -> dict[str, Any]:
    candidates = [("pillow", sys.executable), ("vips", sys.executable)]
    if args.simd_python:
        candidates.append(("pillow-simd", args.simd_python))
    data = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    with data:
        json.dump([{"png": png.hex(), "pose": pose} for png, pose in _results(args.results)], data)
    rivals: list[Rival] = []
    skipped = {}
    for name, python in candidates:
        try:
            rivals.append(Rival(name, python, data.name))
        except (RuntimeError, OSError) as exc:
            skipped[name] = str(exc)
    if not args.simd_python:
        skipped["pillow-simd"] = "no --simd-python given"
    groups = {g: len(fs) for g, fs in _formats_by_group().items()}
    times: dict[str, dict[str, list[float]]] = {r.name: {g: [] for g in GROUPS} for r in rivals}
    times["pillow"]["pose"] = []
    sizes: dict[str, dict[str, list[int]]] = {r.name: {} for r in rivals}
    for rep in range(args.reps):
        order = rivals if rep % 2 == 0 else rivals[::-1]
        for what in (*GROUPS, "pose"):
            for rival in order:
                if what == "pose" and rival.name != "pillow":
                    continue
                answer = rival.run(what, rep)
                times[rival.name][what].append(answer["seconds"])
                for name, n in answer["bytes"].items():
                    sizes[rival.name].setdefault(name, []).append(n)
    for rival in rivals:
        rival.close()
    os.unlink(data.name)
    med = {r: {g: statistics.median(v) for g, v in t.items()} for r, t in times.items()}
    print(f"{args.reps} repetitions, one pose each, 1024x1024 results, one thread per rival")
    head = ("group", "formats", *[f"{r} s/pose" for r in med], *[f"{r} exports/s" for r in med])
    rows = [head]
    for group in GROUPS:
        n = groups[group]
        rows.append((group, str(n), *[f"{med[r][group]:.3f}" for r in med],
                     *[f"{n / med[r][group]:.1f}" for r in med]))  # fmt: skip
    _table(rows)
    base = med.get("pillow")
    if base:
        for name, m in med.items():
            if name != "pillow":
                ratios = ", ".join(f"{g} {base[g] / m[g]:.2f}x" for g in GROUPS)
                print(f"{name} speed vs pillow (>1 = faster): {ratios}")
        pose = base["pose"]
        social = base["social"]
        every = sum(base[g] for g in GROUPS)
        print(f"posemap pose (map 1024x1024 + PNG): {pose:.3f} s; social+marketplace exports "
              f"{social / pose:.1f}x that; all formats {every / pose:.1f}x")  # fmt: skip
        for seconds in args.pose_seconds:
            share, whole = 100 * social / seconds, 100 * every / seconds
            print(f"a {seconds:g} s GPU pose: social+marketplace add {share:.0f} %, "
                  f"all formats {whole:.0f} %")  # fmt: skip
    size_rows = [("format", *sizes)]
    for name in next(iter(sizes.values()), {}):
        if name != "map":
            size_rows.append((name, *[f"{statistics.median(s[name]) / 1024:.0f} KiB"
                                      for s in sizes.values()]))  # fmt: skip
    _table(size_rows)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    return {"median_seconds": med, "formats": groups, "skipped": skipped,
            "versions": {r.name: r.info for r in rivals}}  # fmt: skip


def framing() -> dict[str, Any]:
    from posegen.exports import builtin_formats
    from posegen.exports.framing import figure, frame_for, naive_frame
    from posegen.library import builtin_library

    _, poses = builtin_library()
    formats = [f for f in builtin_formats().values() if f.size is not None]
    sizes = [(1024, 1024), (768, 1152), (1152, 768)]
    counts: dict[str, dict[str, list[int]]] = {f.name: {"naive": [], "posegen": []}
                                                 for f in formats}  # fmt: skip
    for size in sizes:
        for fmt in formats:
            naive = ours = 0
            for pose in poses:
                fig = figure(pose.keypoints, size)
                assert fig is not None
                for kind, frame in (("naive", naive_frame(size, fmt)),
                                    ("posegen", frame_for(size, fig, fmt))):  # fmt: skip
                    pts = [frame.to_output(x, y, fmt.size) for x, y in fig.points]
                    w, h = fmt.size
                    bad = not all(MIN_MARGIN * w <= x <= (1 - MIN_MARGIN) * w
                                  and MIN_MARGIN * h <= y <= (1 - MIN_MARGIN) * h
                                  for x, y in pts)  # fmt: skip
                    if kind == "naive":
                        naive += bad
                    else:
                        ours += bad
            counts[fmt.name]["naive"].append(naive)
            counts[fmt.name]["posegen"].append(ours)
    print(f"{len(poses)} library poses; pairs with a keypoint cut or within {MIN_MARGIN:.0%} "
          "of the edge, per result size")  # fmt: skip
    head = (
        "format",
        *[f"naive {w}x{h}" for w, h in sizes],
        *[f"posegen {w}x{h}" for w, h in sizes],
    )
    rows = [head]
    for name, c in counts.items():
        rows.append((name, *map(str, c["naive"]), *map(str, c["posegen"])))
    _table(rows)
    return {"poses": len(poses), "sizes": sizes, "counts": counts}


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--results", type=int, default=4, help="distinct synthetic results")
    parser.add_argument("--simd-python", help="python of a virtualenv with Pillow-SIMD")
    parser.add_argument("--pose-seconds", type=float, nargs="*", default=[2.0, 6.0])
    parser.add_argument("--framing", action="store_true", help="framing counts only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.data)
        return
    sys.path.insert(0, str(ROOT / "src"))
    figures: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_1m_start": round(os.getloadavg()[0], 2),
    }
    if args.framing:
        figures["framing"] = framing()
    else:
        figures["speed"] = speed(args)
    figures["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(figures, sort_keys=True, default=str))


if __name__ == "__main__":
    main()
