"""What the event-order trigger (migration ``sse_order``) costs an event append on PostgreSQL.

On a scratch database, appends events through the queue's own ``events.append``: single-event
transactions (a worker's progress) and 50-event statements (a claim's ``started`` events), with
the trigger in place and dropped, alternating rounds in the same run; medians and the ratio.

    .venv/bin/python bench/event_order.py [--transactions 500] [--rounds 3]
"""

from __future__ import annotations

import sys

# bench/queue.py would shadow the standard library's queue module; look in bench/ last.
sys.path.append(sys.path.pop(0))

import argparse
import statistics
import time
from typing import Any

from sqlalchemy import Engine, insert, text

from pgbench_util import add_database_args, emit, engine_for, machine, migrated_database

TRIGGER = "generation_events_order"


def _generations(engine: Engine, url: str, n: int) -> list[int]:
    from posegen import accounts
    from posegen.config import load_settings
    from posegen.db.models import GenerationType, Project
    from posegen.library import seed_library
    from posegen.queue import GenerationRequest, submit

    seed_library(engine)
    user = accounts.create_user(engine, "Bench", "bench@example.com").account.id
    settings = load_settings(
        database_url=url, submissions_per_minute=100_000, max_active_generations=100_000
    )
    with engine.begin() as conn:
        project = conn.execute(
            insert(Project).values(user_id=user, name="b").returning(Project.id)
        ).scalar_one()
    request = GenerationRequest(
        user_id=user, project_id=project, type=GenerationType.LIBRARY, pose_ids=[1], variations=1
    )
    return [submit(engine, settings, request).generation_id for _ in range(n)]


def _round(engine: Engine, gids: list[int], transactions: int, batch: int) -> float:
    """Appends per second: ``transactions`` commits of ``batch`` events each."""
    from posegen.queue import events

    with engine.connect() as conn:
        start = time.perf_counter()
        for i in range(transactions):
            with conn.begin():
                events.append(
                    conn,
                    [
                        events.Event(gids[(i * batch + j) % len(gids)], "pose", {"n": i})
                        for j in range(batch)
                    ],
                )
        return transactions * batch / (time.perf_counter() - start)


def _set_trigger(engine: Engine, on: bool) -> None:
    from posegen.db.migrations.versions import sse_order_event_commit_order as mig

    with engine.begin() as conn:
        conn.execute(text(f"DROP TRIGGER IF EXISTS {TRIGGER} ON generation_events"))
        if on:
            conn.execute(text(mig.TRIGGER))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_args(ap, keep=False)
    ap.add_argument("--transactions", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    info = machine()
    print(f"machine: {info}")
    rates: dict[tuple[int, bool], list[float]] = {}
    with migrated_database(args.admin_url, "bench_evorder") as url, engine_for(url) as engine:
        gids = _generations(engine, url, 50)
        for r in range(args.rounds):
            for batch in (1, 50):
                n = args.transactions if batch == 1 else max(1, args.transactions // 10)
                # Which goes first alternates: the first after a DDL may pay for it.
                for on in (True, False) if r % 2 == 0 else (False, True):
                    _set_trigger(engine, on)
                    rates.setdefault((batch, on), []).append(_round(engine, gids, n, batch))
        _set_trigger(engine, True)
    figures: dict[str, Any] = {"loadavg_1m": info["loadavg_1m"]}
    for batch in (1, 50):
        with_t = statistics.median(rates[(batch, True)])
        without = statistics.median(rates[(batch, False)])
        print(
            f"{batch:>2} event(s)/transaction: {with_t:,.0f} events/s with the trigger, "
            f"{without:,.0f} without (ratio {with_t / without:.2f})"
        )
        figures[f"batch{batch}_with"] = round(with_t)
        figures[f"batch{batch}_without"] = round(without)
        figures[f"batch{batch}_ratio"] = round(with_t / without, 3)
    emit(figures)


if __name__ == "__main__":
    main()
