"""What exports at generation time cost a pose: the same generation run by a real in-process
worker (posemap backend, 1024x1024, embedded SQLite) without exports and with every social and
marketplace format (``exportFormats``), interleaved, medians per pose, and the ratio.

posemap draws a pose in a fraction of a second, so the ratio is the worst case; with a real
model (seconds per pose) the same absolute cost is a small share.

    .venv/bin/python bench/exports_flow.py [--poses 6] [--rounds 3]
"""

from __future__ import annotations

import sys

# bench/queue.py shadows the standard library's ``queue`` (psycopg imports it): search this
# folder last.
sys.path.append(sys.path.pop(0))

import argparse
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image
from sqlalchemy import select

from posegen import accounts, exporting, projects, queue, uploads
from posegen.config import load_settings
from posegen.db import migrate
from posegen.db.engine import make_engine
from posegen.db.models import GenerationType, PoseLibrary, Role
from posegen.library import seed_library
from posegen.queue import GenerationRequest
from posegen.worker import Worker
from posegen.worker.pipeline import make_handler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--poses", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="posegen-exports-flow-"))
    settings = load_settings(
        data_dir=folder, database_url=f"sqlite:///{folder}/db.sqlite", poll_interval_seconds=0.05
    )
    engine = make_engine(settings)
    migrate.upgrade(engine)
    user = accounts.create_user(engine, "Bench", "bench@example.com", Role.ADMIN).account
    seed_library(engine)
    buf = io.BytesIO()
    Image.new("RGB", (600, 800), (180, 150, 120)).save(buf, format="PNG")
    subject = uploads.store(engine, settings, user.id, buf.getvalue())
    project = projects.create(engine, user.id, "bench", None, subject.id)
    with engine.connect() as conn:
        poses = [
            int(i)
            for i in conn.execute(
                select(PoseLibrary.id).order_by(PoseLibrary.id).limit(args.poses)
            ).scalars()
        ]
    table = exporting.formats(settings)
    social = sorted(n for n, f in table.items() if f.dpi is None and n != "original")
    handler = make_handler(settings)

    def per_pose(formats: list[str]) -> float:
        queue.submit(
            engine,
            settings,
            GenerationRequest(
                user_id=user.id,
                project_id=project.id,
                type=GenerationType.LIBRARY,
                pose_ids=poses,
                variations=1,
                width=1024,
                height=1024,
                seed=1,
                export_formats=tuple(formats) or None,
            ),
        )
        started = time.perf_counter()
        Worker(settings, engine, handler, concurrency=1, burst=True).run()
        return (time.perf_counter() - started) / len(poses)

    plain: list[float] = []
    exported: list[float] = []
    for _ in range(args.rounds):  # interleaved: load on the machine hits both alike
        plain.append(per_pose([]))
        exported.append(per_pose(social))
    without, with_ = statistics.median(plain), statistics.median(exported)
    print(f"per pose without exports: {without:.3f} s")
    print(f"per pose with {len(social)} formats: {with_:.3f} s")
    print(f"exports cost per pose: {with_ - without:.3f} s (ratio {with_ / without:.2f}x)")
    print(
        json.dumps(
            {
                "formats": len(social),
                "without_s": round(without, 4),
                "with_s": round(with_, 4),
                "exports_s": round(with_ - without, 4),
                "ratio": round(with_ / without, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
