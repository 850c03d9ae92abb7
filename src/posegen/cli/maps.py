"""``posegen maps``: load maps through the cache, show its counters, clear it, render keypoints."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import typer

from posegen.cli.app import state
from posegen.controlnet import MapCache, render_keypoints
from posegen.exceptions import FetchError, InvalidInput, PosegenError

app = typer.Typer(help="ControlNet pose maps and their cache.", no_args_is_help=True)


@app.command()
def fetch(
    ctx: typer.Context,
    urls: Annotated[list[str], typer.Argument(help="URLs, /uploads/... paths or relative paths.")],
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, max=256, help="Concurrent loads per URL.")
    ] = 1,
    width: Annotated[int | None, typer.Option(help="Resize to this width (snapped to 64).")] = None,
    height: Annotated[int | None, typer.Option(help="Resize to this height.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Load each URL through the cache (N concurrent loads each) and print every outcome:
    hit / miss / coalesced / error, bytes, SHA-256, error kind. Exit 1 if any load failed."""
    if (width is None) != (height is None):
        raise InvalidInput("give both --width and --height, or neither")
    size = (width, height) if width is not None and height is not None else None
    cache = MapCache(state(ctx).settings)
    try:
        jobs = [url for url in urls for _ in range(concurrency)]
        with ThreadPoolExecutor(max_workers=min(len(jobs), 64)) as pool:
            loads = list(pool.map(lambda url: _load_one(cache, url, size), jobs))
        stats = cache.stats()
    finally:
        cache.close()
    failed = sum(1 for r in loads if r["outcome"] == "error")
    if as_json:
        typer.echo(json.dumps({"loads": loads, "failed": failed, "stats": stats}))
    else:
        for r in loads:
            typer.echo(
                f"{r['outcome']:<9} {r['bytes']:>9} {r['sha256'] or '-':<64} "
                f"{r['errorKind'] or '-':<18} {r['url']}"
            )
    if failed:
        raise typer.Exit(1)


def _load_one(cache: MapCache, url: str, size: tuple[int, int] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"url": url, "outcome": "error", "detail": None, "bytes": 0}
    out.update(sha256=None, errorKind=None, error=None)
    try:
        result = cache.load(url, size)
    except FetchError as exc:
        out.update(errorKind=exc.kind, error=exc.message)
        return out
    if result is None:
        out.update(outcome="none", detail="placeholder")
        return out
    hit = result.outcome in ("memory", "disk")
    out.update(
        outcome="hit" if hit else result.outcome,
        detail=result.outcome,
        bytes=len(result.png),
        sha256=result.sha256,
        size=list(result.size),
    )
    return out


@app.command()
def stats(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Counters of every process on this host, and what the disk cache holds."""
    settings = state(ctx).settings
    cache = MapCache(settings)
    totals = cache.host_stats()
    usage = cache.usage()
    disk: dict[str, object] = {
        "folder": str(cache.root),
        "entries": usage.entries,
        "bytes": usage.bytes,
        "budgetBytes": settings.map_cache_max_bytes,
        "errorMarkers": usage.error_markers,
        "tempFiles": usage.temp_files,
    }
    if as_json:
        typer.echo(json.dumps({"counters": totals, "disk": disk}))
        return
    for name, value in totals.items():
        typer.echo(f"{name:<28} {value}")
    for name, item in disk.items():
        typer.echo(f"disk.{name:<23} {item}")


@app.command()
def clear(ctx: typer.Context) -> None:
    """Remove every cached map and remembered failure (lock files stay)."""
    cache = MapCache(state(ctx).settings)
    count, size = cache.clear()
    typer.echo(f"removed {count} map(s), {size} bytes")


@app.command()
def render(
    keypoints_file: Annotated[
        Path, typer.Argument(help="JSON: a pose (canvas, framing, people) or 18 [x, y] points.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG to write.")],
    width: Annotated[int, typer.Option(min=64, max=4096)] = 512,
    height: Annotated[int, typer.Option(min=64, max=4096)] = 512,
) -> None:
    """Render a pose as an OpenPose map, placed undistorted on the output size (body, and
    hands and face when the pose has them)."""
    try:
        keypoints = json.loads(keypoints_file.read_text())
    except OSError as exc:
        raise InvalidInput(f"cannot read {keypoints_file}: {exc.strerror}") from exc
    except ValueError as exc:
        raise InvalidInput(f"{keypoints_file} is not JSON: {exc}") from exc
    try:
        image = render_keypoints(keypoints, width, height)
    except InvalidInput as exc:
        # A bad pose in the file is bad input to this command, like a file that is not JSON.
        raise InvalidInput(f"{keypoints_file}: {exc.message}") from exc
    try:
        image.save(output, "PNG")
    except OSError as exc:
        raise PosegenError(f"cannot write {output}: {exc}") from exc
    typer.echo(f"wrote {output} ({image.width}x{image.height})")
