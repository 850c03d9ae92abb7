"""What the credit charge costs a submit: single submits per second through ``queue.submit``
with the user-facing limits on, with credits free (price 0), charged (price 1) and as a
quota-plan user (where the code has plans: counted against the day's quota, not charged), on
PostgreSQL (a scratch database) and SQLite, run after run interleaved.

    .venv/bin/python bench/credits_submit.py                   # 2,000 submits per run, 3 reps
    .venv/bin/python bench/credits_submit.py --submits 500 --reps 1

Run it with ``PYTHONPATH`` pointing at an older ``src`` to measure the code before credits
(there the price is ignored)."""

from __future__ import annotations

import os
import sys

# As in bench/queue.py: keep ``bench/`` last on the path so ``import queue`` is the standard one.
sys.path.sort(key=lambda p: os.path.abspath(p or ".") == os.path.dirname(os.path.abspath(__file__)))

import argparse
import datetime as dt
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert, update

from pgbench_util import DEFAULT_ADMIN_URL, migrated_database
from posegen import accounts, queue
from posegen.config import load_settings
from posegen.db import migrate
from posegen.db.engine import make_engine
from posegen.db.models import GenerationType, Project, User
from posegen.queue import GenerationRequest, SubmitLimits

#: Quota plans exist (this branch): a third arm submits as a quota user (price 1, not charged).
HAS_PLANS = importlib.util.find_spec("posegen.credits.plans") is not None


def one_run(url: str, data_dir: str, price: int, n: int, quota: bool = False) -> float:
    settings = load_settings(database_url=url, data_dir=data_dir)
    if "credits_per_pose" in type(settings).model_fields:
        settings = settings.model_copy(update={"credits_per_pose": price})
    engine = make_engine(settings)
    try:
        email = f"b{time.monotonic_ns()}@example.com"
        user = accounts.create_user(engine, "Bench", email).account.id
        with engine.begin() as conn:
            project = conn.execute(
                insert(Project).values(user_id=user, name="b").returning(Project.id)
            ).scalar_one()
            if hasattr(User, "credit_balance"):
                conn.execute(update(User).where(User.id == user).values(credit_balance=10**9))
        if quota:
            from posegen.credits import plans

            until = dt.date.today() + dt.timedelta(days=2)
            plans.set_plan(engine, user, daily_poses=10**6, valid_until=until)
        limits = SubmitLimits(max_active=10**9, per_minute=10**9)
        req = GenerationRequest(
            user_id=user,
            project_id=project,
            type=GenerationType.TEXT,
            pose_ids=[],
            variations=1,
            prompt="x",
        )
        started = time.perf_counter()
        for _ in range(n):
            queue.submit(engine, settings, req, limits)
        return n / (time.perf_counter() - started)
    finally:
        engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--submits", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    args = ap.parse_args()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, migrated_database(args.admin_url, "cb") as pg:
        sqlite_url = f"sqlite:///{Path(tmp) / 'b.db'}"
        engine = make_engine(load_settings(database_url=sqlite_url, data_dir=tmp))
        migrate.upgrade(engine)
        engine.dispose()
        for _ in range(args.reps):
            for name, url in (("postgresql", pg), ("sqlite", sqlite_url)):
                for price in (0, 1):
                    rate = one_run(url, tmp, price, args.submits)
                    results.setdefault(f"{name} price {price}", []).append(rate)
                if HAS_PLANS:
                    rate = one_run(url, tmp, 1, args.submits, quota=True)
                    results.setdefault(f"{name} quota plan", []).append(rate)
    for key, rates in results.items():
        print(
            f"{key:<20} {statistics.median(rates):8.0f} submits/s  (runs: "
            + ", ".join(f"{r:.0f}" for r in rates)
            + ")"
        )


if __name__ == "__main__":
    main()
