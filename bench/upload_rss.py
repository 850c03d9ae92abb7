"""Memory of the API under parallel big uploads.

Starts a real ``posegen serve`` (SQLite, a fresh data dir) on 127.0.0.1, then sends N uploads of
distinct ~15 MB JPEGs at once as ``POST /projects`` multipart with a ``subject`` file (the route
both the old and the new code have) and samples the server's RSS every 10 ms: idle before,
peak during, and after. ``--src`` runs another checkout's code (e.g. ``/work/main/src``) to
compare before/after in one sitting.

Usage: .venv/bin/python bench/upload_rss.py [--count 10] [--src PATH] [--width 3400 --height 2400]
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
from PIL import Image

PREFIX = "/api/pose-generator"


def jpegs(count: int, width: int, height: int) -> list[bytes]:
    out = []
    for _ in range(count):
        image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=90, subsampling=0)
        out.append(buf.getvalue())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--width", type=int, default=3400)
    ap.add_argument("--height", type=int, default=2400)
    ap.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src"))
    args = ap.parse_args()

    data = Path(tempfile.mkdtemp(prefix="posegen-rss-"))
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": args.src,
        "POSEGEN_DATA_DIR": str(data),
        "POSEGEN_API_PORT": str(port),
        "POSEGEN_LOG_LEVEL": "WARNING",
    }
    env.pop("POSEGEN_DATABASE_URL", None)
    cli = [sys.executable, "-m", "posegen"]
    subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
    made = subprocess.run(
        [*cli, "users", "create", "Bench", "bench@example.com", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    key = next(v for v in json.loads(made.stdout).values() if str(v).startswith("pg_"))
    images = jpegs(args.count, args.width, args.height)
    server = subprocess.Popen([*cli, "serve"], env=env, stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, timeout=300, headers=headers) as client:
            for _ in range(200):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)
            client.get(PREFIX + "/projects")  # warm: auth, database, routes
        proc = psutil.Process(server.pid)
        time.sleep(0.5)
        idle = proc.memory_info().rss
        peak = [idle]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()

        def one(i: int) -> int:
            with httpx.Client(base_url=base, timeout=300, headers=headers) as c:
                r = c.post(
                    PREFIX + "/projects",
                    data={"name": f"p{i}"},
                    files={"subject": (f"{i}.jpg", images[i], "image/jpeg")},
                )
                return r.status_code

        started = time.perf_counter()
        with ThreadPoolExecutor(args.count) as pool:
            statuses = list(pool.map(one, range(args.count)))
        elapsed = time.perf_counter() - started
        time.sleep(1.0)
        stop.set()
        sampler.join()
        after = proc.memory_info().rss
        stored = sum(p.stat().st_size for p in (data / "uploads").rglob("*") if p.is_file())
    finally:
        server.terminate()
        server.wait(30)
    mib = 1024 * 1024
    print(f"{args.count} parallel uploads of {sum(map(len, images)) / args.count / 1e6:.1f} MB")
    print(f"statuses {sorted(set(statuses))}; {elapsed:.1f} s")
    print(
        f"RSS idle {idle / mib:.0f} MiB, peak {peak[0] / mib:.0f} MiB, after {after / mib:.0f} MiB"
    )
    print(f"stored {stored / 1e6:.1f} MB for {sum(map(len, images)) / 1e6:.1f} MB sent")
    print(
        json.dumps(
            {
                "src": args.src,
                "count": args.count,
                "upload_mb": round(sum(map(len, images)) / args.count / 1e6, 1),
                "statuses": statuses,
                "seconds": round(elapsed, 2),
                "rss_idle_mib": round(idle / mib),
                "rss_peak_mib": round(peak[0] / mib),
                "rss_after_mib": round(after / mib),
                "stored_mb": round(stored / 1e6, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
