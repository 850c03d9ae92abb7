"""What the credit charge costs a submit: single submits per second through ``queue.submit``
with the user-facing limits on, with credits free (price 0), charged (price 1) and as a
quota-plan user (where the code has plans: counted against the day's quota, not charged), on
PostgreSQL (a scratch database) and SQLite, run after run interleaved.

    .venv/bin/python bench/credits_submit.py                   # 2,000 submits per run, 3 reps
    .venv/bin/python bench/credits_submit.py --submits 500 --reps 1

Run it with ``PYTHONPATH`` pointing at an older ``src`` to measure the code before credits
(there the price is ignored); ``--free-only`` measures price 0 alone, so that runs of the two
trees can alternate process by process::

    git archive a99f12d src | tar -x -C /tmp/before        # the tree before credits
    for i in 1 2 3 4; do
      PYTHONPATH=src .venv/bin/python bench/credits_submit.py --free-only --reps 1
      PYTHONPATH=/tmp/before/src .venv/bin/python bench/credits_submit.py --free-only --reps 1
    done"""

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

from sqlalchemy import Engine, insert, update

from pgbench_util import DEFAULT_ADMIN_URL, migrated_database
from posegen import accounts, queue
from posegen.config import load_settings
from posegen.db import migrate
from posegen.db.engine import make_engine
from posegen.db.models import GenerationType, Project, User
from posegen.queue import GenerationRequest, SubmitLimits

#: Quota plans exist (this branch): a third arm submits as a quota user (price 1, not charged).
HAS_PLANS = (
    importlib.util.find_spec("posegen.credits") is not None
    and importlib.util.find_spec("posegen.credits.plans") is not None
)


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
        for _ in range(20):  # warm: the pool, prepared statements
            queue.submit(engine, settings, req, limits)
        server = _server_cpu(engine)
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            queue.submit(engine, settings, req, limits)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
        server = _server_cpu(engine) - server
        CPU.append((cpu * 1000 / n, server * 1000 / n))
        return n / wall
    finally:
        engine.dispose()


#: (client CPU ms, PostgreSQL backend CPU ms) per submit of each run, in run order. CPU time,
#: unlike submits per second, does not count the time spent waiting for a core on a loaded
#: machine, so it compares two trees more steadily.
CPU: list[tuple[float, float]] = []
_TICKS = os.sysconf("SC_CLK_TCK")


def _server_cpu(engine: Engine) -> float:
    """Seconds of CPU the PostgreSQL backends serving this database have used (the server runs
    on this machine: their /proc entries); 0 on SQLite, which runs in this process."""
    if engine.dialect.name != "postgresql":
        return 0.0
    with engine.connect() as conn:
        pids = conn.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
        ).scalars()
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / _TICKS


def _drop_plan_condition() -> None:
    """The free submit without its quota-plan condition: PostgreSQL's statement and SQLite's
    admission as they would be with no plans (only for measuring: a quota user would be
    admitted as pay as you go)."""
    from posegen.queue import dialect_pg_bulk

    submit = sys.modules["posegen.queue.submit"]  # the package's ``submit`` is the function

    dialect_pg_bulk.SUBMIT_ONE_FREE = dialect_pg_bulk.SUBMIT_ONE_FREE.replace(
        dialect_pg_bulk._NOT_ON_QUOTA, ""
    )
    submit._ADMIT_SQLITE_PAYG = submit._ADMIT_SQLITE  # an unused quota_day is ignored


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--submits", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    ap.add_argument(
        "--free-only",
        action="store_true",
        help="only price 0 (what a user who never heard of credits pays); for interleaving "
        "this run with one of the code before credits, process by process",
    )
    ap.add_argument(
        "--no-plan-condition",
        action="store_true",
        help="submit with the pay-as-you-go admission minus its quota-plan condition (what is "
        "left of credits in a free submit), to compare with a run without this flag",
    )
    args = ap.parse_args()
    if args.no_plan_condition:
        _drop_plan_condition()
    prices = (0,) if args.free_only else (0, 1)
    results: dict[str, list[float]] = {}
    cpu: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, migrated_database(args.admin_url, "cb") as pg:
        sqlite_url = f"sqlite:///{Path(tmp) / 'b.db'}"
        engine = make_engine(load_settings(database_url=sqlite_url, data_dir=tmp))
        migrate.upgrade(engine)
        engine.dispose()
        for _ in range(args.reps):
            for name, url in (("postgresql", pg), ("sqlite", sqlite_url)):
                for price in prices:
                    rate = one_run(url, tmp, price, args.submits)
                    results.setdefault(f"{name} price {price}", []).append(rate)
                    cpu.setdefault(f"{name} price {price}", []).append(CPU[-1])
                if HAS_PLANS and not args.free_only:
                    rate = one_run(url, tmp, 1, args.submits, quota=True)
                    results.setdefault(f"{name} quota plan", []).append(rate)
                    cpu.setdefault(f"{name} quota plan", []).append(CPU[-1])
    for key, rates in results.items():
        client = statistics.median(c for c, _ in cpu[key])
        server = statistics.median(s for _, s in cpu[key])
        print(
            f"{key:<20} {statistics.median(rates):8.0f} submits/s  (runs: "
            + ", ".join(f"{r:.0f}" for r in rates)
            + f")  cpu/submit: client {client:.3f} ms, server {server:.3f} ms"
        )


if __name__ == "__main__":
    main()
