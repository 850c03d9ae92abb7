"""ControlNet map cache benchmark.

1. Stampede: P processes x T threads load one cold URL at once from an origin with ~200 ms
   latency. Origin fetches for posegen (host-wide single-flight: target 1) against a simulation
   of the seed's design (a per-process mutex map and a disk re-check: one fetch per process),
   measured in the same run, and their ratio.
2. Warm-hit latency of a 1024x1024 map from memory and from disk (p50/p99).
3. Throughput of a 90 %-hit mix (10 % cold URLs from the same slow origin) with N threads.

Usage: .venv/bin/python bench/maps.py [--processes 10] [--threads 10] [--latency 0.2] ...
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from posegen.config import Settings, load_settings
from posegen.controlnet import MapCache, MapSource, render_keypoints
from posegen.library import builtin_library


# --- origin ---------------------------------------------------------------------------------
class Origin:
    """Serves the same PNG under every path after ``latency`` seconds; counts requests."""

    def __init__(self, body: bytes, latency: float) -> None:
        origin = self
        self.body, self.latency = body, latency
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with origin.lock:
                    origin.counts[self.path] += 1
                time.sleep(origin.latency)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(origin.body)))
                self.end_headers()
                self.wfile.write(origin.body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self, path: str) -> int:
        with self.lock:
            return self.counts[path]


def map_png(size: int) -> bytes:
    _cats, poses = builtin_library()
    buf = io.BytesIO()
    render_keypoints(poses[0].keypoints, size, size).save(buf, "PNG")
    return buf.getvalue()


def bench_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": f"sqlite:///{data_dir / 'unused.db'}",
        "fetch_allowlist": "127.0.0.1",
        "fetch_timeout_seconds": 30.0,
        "map_failure_ttl_seconds": 0.0,
    }
    values.update(overrides)
    return load_settings(**values)


# --- stampede children ----------------------------------------------------------------------
def child(design: str, data_dir: str, go: str, url: str, threads: int) -> None:
    """One worker process: ``threads`` loads of ``url`` released when ``go`` appears."""
    if design == "posegen":
        cache = MapCache(bench_settings(Path(data_dir)))

        def load() -> str:
            result = cache.load(url)
            assert result is not None
            return result.outcome
    else:
        seed = SeedDesign(Path(data_dir))

        def load() -> str:
            return seed.load(url)

    print("ready", flush=True)
    while not os.path.exists(go):
        time.sleep(0.0005)
    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(lambda _: load(), range(threads)))
    print(json.dumps({"outcomes": outcomes, "done": time.time()}), flush=True)


class SeedDesign:
    """The seed's ControlNetService, translated: an unlocked disk check, then a per-process
    mutex per URL, a second disk check, fetch, write. Nothing coordinates processes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder / "seed-cache"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.locks: dict[str, threading.Lock] = {}
        self.guard = threading.Lock()
        self.client = httpx.Client(trust_env=False, timeout=30)

    def load(self, url: str) -> str:
        path = self.folder / (hashlib.sha256(url.encode()).hexdigest() + ".png")
        if path.exists():
            return "disk"
        with self.guard:
            lock = self.locks.setdefault(url, threading.Lock())
        with lock:
            if path.exists():
                return "coalesced"
            data = self.client.get(url).content
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            return "miss"


def stampede(design: str, origin: Origin, path: str, procs: int, threads: int) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"maps-bench-{design}-"))
    go = data_dir / "go"
    cmd = [sys.executable, __file__, "--child", design, str(data_dir), str(go), origin.url(path)]
    children = [
        subprocess.Popen([*cmd, str(threads)], stdout=subprocess.PIPE, text=True)
        for _ in range(procs)
    ]
    for c in children:
        assert c.stdout is not None and c.stdout.readline().strip() == "ready"
    started = time.time()
    go.touch()
    outcomes: Counter[str] = Counter()
    done = started
    for c in children:
        out, _ = c.communicate(timeout=120)
        report = json.loads(out.strip().splitlines()[-1])
        outcomes.update(report["outcomes"])
        done = max(done, report["done"])
    return {
        "origin_fetches": origin.count(path),
        "loads": sum(outcomes.values()),
        "outcomes": dict(outcomes),
        "wall_s": round(done - started, 3),
    }


# --- warm hits and the mix ------------------------------------------------------------------
def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    p50 = ordered[len(ordered) // 2] / 1000
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1000
    return p50, p99


def warm_latency(origin: Origin, loads: int) -> dict[str, float]:
    data_dir = Path(tempfile.mkdtemp(prefix="maps-bench-warm-"))
    url = origin.url("/warm-1024.png")
    memory = MapCache(bench_settings(data_dir))
    result = memory.load(url)
    assert result is not None and result.size == (1024, 1024)
    source = MapSource.from_url(url)
    timings = []
    for _ in range(loads):
        t = time.perf_counter_ns()
        memory.load(source)
        timings.append(time.perf_counter_ns() - t)
    mem_p50, mem_p99 = percentiles(timings)
    timings = []
    for _ in range(loads):
        t = time.perf_counter_ns()
        memory.load(url)  # including canonicalising the URL string
        timings.append(time.perf_counter_ns() - t)
    str_p50, str_p99 = percentiles(timings)
    disk = MapCache(bench_settings(data_dir, map_cache_memory_items=0))
    timings = []
    for _ in range(max(loads // 20, 50)):
        t = time.perf_counter_ns()
        hit = disk.load(source)
        timings.append(time.perf_counter_ns() - t)
        assert hit is not None and hit.outcome == "disk"
    disk_p50, disk_p99 = percentiles(timings)
    memory.close()
    disk.close()
    return {
        "map_bytes": len(result.png),
        "memory_p50_us": round(mem_p50, 2),
        "memory_p99_us": round(mem_p99, 2),
        "memory_url_string_p50_us": round(str_p50, 2),
        "memory_url_string_p99_us": round(str_p99, 2),
        "disk_p50_us": round(disk_p50, 1),
        "disk_p99_us": round(disk_p99, 1),
    }


def mix(origin: Origin, loads: int, threads: int, warm_urls: int, latency: float) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="maps-bench-mix-"))
    cache = MapCache(bench_settings(data_dir))
    warm = [origin.url(f"/mix-warm-{i}.png") for i in range(warm_urls)]
    for url in warm:
        cache.load(url)
    origin.latency = latency
    rnd = random.Random(42)
    plan = [
        origin.url(f"/mix-cold-{i}.png") if rnd.random() < 0.10 else rnd.choice(warm)
        for i in range(loads)
    ]
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def load(url: str) -> None:
        result = cache.load(url)
        assert result is not None
        with lock:
            outcomes[result.outcome] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(load, plan))
    elapsed = time.perf_counter() - started
    cache.close()
    return {
        "loads": loads,
        "threads": threads,
        "outcomes": dict(outcomes),
        "seconds": round(elapsed, 3),
        "loads_per_s": round(loads / elapsed, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=10, help="loads per process")
    parser.add_argument("--latency", type=float, default=0.2, help="origin latency, seconds")
    parser.add_argument("--hit-loads", type=int, default=20000)
    parser.add_argument("--mix-loads", type=int, default=2000)
    parser.add_argument("--mix-threads", type=int, default=16)
    parser.add_argument("--map-size", type=int, default=1024)
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        design, data_dir, go, url, threads = args.child
        child(design, data_dir, go, url, int(threads))
        return

    origin = Origin(map_png(args.map_size), args.latency)
    ours = stampede("posegen", origin, "/stampede-posegen.png", args.processes, args.threads)
    seed = stampede("seed", origin, "/stampede-seed.png", args.processes, args.threads)
    ratio = seed["origin_fetches"] / max(ours["origin_fetches"], 1)
    origin.latency = 0.0
    warm = warm_latency(origin, args.hit_loads)
    mixed = mix(origin, args.mix_loads, args.mix_threads, warm_urls=32, latency=args.latency)

    n = args.processes * args.threads
    print(
        f"\nStampede: {n} cold loads of one URL, {args.processes} processes x {args.threads}"
        f" threads, origin latency {args.latency * 1000:.0f} ms, {args.map_size}px map"
    )
    print(f"{'design':<34}{'origin fetches':>15}{'wall s':>9}  outcomes")
    for name, r in (
        ("posegen (host-wide single-flight)", ours),
        ("seed (per-process mutex, simulated)", seed),
    ):
        print(f"{name:<34}{r['origin_fetches']:>15}{r['wall_s']:>9}  {r['outcomes']}")
    print(f"ratio seed/posegen origin fetches: {ratio:.1f}x")
    print(f"\nWarm hits, {args.map_size}x{args.map_size} map ({warm['map_bytes']} bytes PNG)")
    print(
        f"  memory       p50 {warm['memory_p50_us']:>9.2f} us   "
        f"p99 {warm['memory_p99_us']:>9.2f} us"
    )
    print(
        f"  memory (URL) p50 {warm['memory_url_string_p50_us']:>9.2f} us   "
        f"p99 {warm['memory_url_string_p99_us']:>9.2f} us"
    )
    print(f"  disk         p50 {warm['disk_p50_us']:>9.1f} us   p99 {warm['disk_p99_us']:>9.1f} us")
    print(f"  disk/memory p50 ratio: {warm['disk_p50_us'] / warm['memory_p50_us']:.0f}x")
    print(
        f"\n90%-hit mix: {mixed['loads']} loads, {mixed['threads']} threads, cold loads wait "
        f"{args.latency * 1000:.0f} ms on the origin: {mixed['loads_per_s']} loads/s "
        f"{mixed['outcomes']}"
    )
    print(
        json.dumps(
            {
                "processes": args.processes,
                "threads_per_process": args.threads,
                "origin_latency_s": args.latency,
                "map_size": args.map_size,
                "posegen_origin_fetches": ours["origin_fetches"],
                "seed_origin_fetches": seed["origin_fetches"],
                "fetch_ratio": round(ratio, 2),
                "posegen_stampede_wall_s": ours["wall_s"],
                "seed_stampede_wall_s": seed["wall_s"],
                **warm,
                "mix_loads_per_s": mixed["loads_per_s"],
                "mix_outcomes": mixed["outcomes"],
            }
        )
    )


if __name__ == "__main__":
    main()
