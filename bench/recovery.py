"""Recovery: how fast a dead worker's generations run again (``--mode kill``, the default), and
the recovery scan on 1M generations (``--mode scan``).

``--mode kill`` (bench/recovery_kill.py): SIGKILL of a real worker process holding 4 generations,
lease 60 s; seconds until a surviving worker has claimed all 4 again through the liveness locks,
``--reps`` times per engine, against the lease-based path once per engine in the same run; 0
duplicate poses; then a PostgreSQL restart on a throwaway pgserver instance: seconds until every
worker claims again. Targets: p50 < 1 s and max < 3 s on both engines.

    .venv/bin/python bench/recovery.py --kills 3                # ~2 minutes (the lease path waits)
    .venv/bin/python bench/recovery.py --kills 3 --no-lease-baseline --no-restart

``--mode scan``: no index vs the seed's composite indexes vs posegen's.

The seed added ``(status, startedAt)`` and ``(status, startedAt, queueJobId)`` over every row of
the job table. posegen's recovery scan reads ``lease_expires_at`` through an index that holds only
the rows in ``processing``. Same data, same run: latency of each scan, build time and size of
each index, and how many healthy jobs the seed's age-based scan would pick up again.

    .venv/bin/python bench/recovery.py --mode scan        # 1,000,000 generations, 1,000 running
    .venv/bin/python bench/recovery.py --mode scan --generations 100000 --processing 200
"""

from __future__ import annotations

import sys

# Running bench/x.py puts bench/ first on sys.path, where bench/queue.py (the queue benchmark)
# would shadow the standard library's queue module; look there last.
sys.path.append(sys.path.pop(0))

import argparse
import os
import time
from typing import Any

import psycopg

from pgbench_util import (
    add_database_args,
    connect,
    emit,
    load_users,
    machine,
    migrated_database,
    server_version,
    table,
    timed,
)
from posegen.db.hot_queries import RECOVERY_SCAN

USERS = 10_000

# Finished rows, plus a sliver in flight: running jobs started up to 2 h ago (long jobs are
# healthy while they heartbeat); 95% of leases are live (10+ minutes left, so they stay live for
# the whole run), 5% expired. queue_job_id stands in for
# the seed's queueJobId (a BullMQ job id on every row).
LOAD = """
INSERT INTO pose_generations (
    user_id, project_id, type, selected_pose_ids, variations, total_expected_poses,
    width, height, status, priority, poses_completed, poses_failed, attempts, max_attempts,
    run_after, lease_token, cancel_requested, created_at, started_at, completed_at,
    heartbeat_at, lease_expires_at, leased_by, queue_job_id)
SELECT u, u, 'library', '[1]', 1, 1, 512, 512, st, 0,
       CASE WHEN st = 'completed' THEN 1 ELSE 0 END, 0, 1, 3, ts, 1, false, ts,
       CASE WHEN st = 'pending' THEN NULL WHEN st = 'processing' THEN run_start ELSE ts END,
       CASE WHEN st IN ('pending', 'processing') THEN NULL ELSE ts + interval '40 seconds' END,
       CASE WHEN st = 'processing' THEN now() - interval '10 seconds' END,
       CASE WHEN st <> 'processing' THEN NULL
            WHEN random() < 0.95 THEN now() + interval '10 min' + random() * interval '1 min'
            ELSE now() - random() * interval '60 seconds' END,
       CASE WHEN st = 'processing' THEN 'worker-' || mod(i, 16) END,
       'bull:pose-generation:' || i
FROM (
    SELECT i, 1 + mod(i, %(users)s) AS u, now() - random() * interval '90 days' AS ts,
           now() - random() * interval '2 hours' AS run_start,
           CASE WHEN i <= %(processing)s THEN 'processing'
                WHEN i <= %(processing)s + %(pending)s THEN 'pending'
                WHEN random() < 0.9 THEN 'completed' ELSE 'failed' END AS st
    FROM generate_series(1, %(generations)s) i
) s
"""

SEED_INDEXES = {
    "pose_generations_status_startedAt_idx": "pose_generations (status, started_at)",
    "pose_generations_status_startedAt_queueJobId_idx": (
        "pose_generations (status, started_at, queue_job_id)"
    ),
}
POSEGEN_INDEX = "ix_pose_generations_recovery"
POSEGEN_INDEX_SPEC = "pose_generations (lease_expires_at) WHERE status = 'processing'"

# The seed's recovery query (its "Problem" section), snake_case.
SEED_SCAN = (
    "SELECT * FROM pose_generations WHERE status = 'processing' "
    "AND started_at < NOW() - INTERVAL '5 minutes' ORDER BY started_at ASC LIMIT 10"
)
POSEGEN_SCAN = RECOVERY_SCAN.sql.replace(":now", "now()").replace(":limit", "%(limit)s")


def index_size(conn: psycopg.Connection[Any], name: str) -> int:
    row = conn.execute("SELECT pg_relation_size(%s::regclass)", (name,)).fetchone()
    return int(row[0]) if row else 0


def plan_of(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> str:
    """The scan node of the plan, e.g. "Index Scan using ix_... on pose_generations"."""
    lines = [str(r[0]) for r in conn.execute("EXPLAIN " + sql, params).fetchall()]  # type: ignore[arg-type]
    node = next((line for line in lines if "Scan" in line), lines[0])
    return node.split("  (")[0].replace("->", "").strip()


def build(conn: psycopg.Connection[Any], name: str, spec: str) -> float:
    t0 = time.perf_counter()
    conn.execute(f'CREATE INDEX "{name}" ON {spec}')  # type: ignore[arg-type]
    conn.execute("ANALYZE pose_generations")
    return round(time.perf_counter() - t0, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, default=1_000_000)
    ap.add_argument("--processing", type=int, default=1_000)
    ap.add_argument("--pending", type=int, default=2_000)
    ap.add_argument("--reps", type=int, default=500, help="repetitions of indexed scans")
    ap.add_argument("--slow-reps", type=int, default=10, help="repetitions of unindexed scans")
    ap.add_argument("--mode", choices=("kill", "scan"), default="kill")
    ap.add_argument("--kills", type=int, default=3, help="kill: fast-path runs per engine")
    ap.add_argument(
        "--no-lease-baseline", action="store_true", help="kill: skip the lease-based path"
    )
    ap.add_argument("--no-restart", action="store_true", help="kill: skip the PostgreSQL restart")
    add_database_args(ap)
    args = ap.parse_args()
    if args.mode == "kill":
        kill_main(args)
        return
    # LIMIT 10 as the seed's scan (posegen's own batch is POSEGEN_RECOVERY_BATCH_SIZE, 100).
    limit = {"limit": 10}

    figures: dict[str, Any] = {
        "bench": "recovery",
        **machine(),
        "generations": args.generations,
        "processing": args.processing,
    }
    with migrated_database(args.admin_url, "posegen_bench_recovery", args.keep) as url:
        with connect(url) as conn:
            figures["postgres"] = server_version(conn)
            conn.execute("ALTER TABLE pose_generations ADD COLUMN queue_job_id varchar(64)")
            users = min(USERS, args.generations)
            load_users(conn, users)
            conn.execute(f"DROP INDEX {POSEGEN_INDEX}")  # type: ignore[arg-type]
            conn.execute("SELECT setseed(0.17)")
            t0 = time.perf_counter()
            conn.execute(
                LOAD,
                {
                    "users": users,
                    "processing": args.processing,
                    "pending": args.pending,
                    "generations": args.generations,
                },
            )
            conn.execute("VACUUM ANALYZE pose_generations")
            figures["load_s"] = round(time.perf_counter() - t0, 1)
            print(
                f"loaded {args.generations:,} generations ({args.processing:,} processing) "
                f"in {figures['load_s']} s"
            )

            # Correctness, not speed: what each scan would hand to recovery.
            stale = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE lease_expires_at > now()) "
                "FROM pose_generations WHERE status = 'processing' "
                "AND started_at < now() - interval '5 minutes'"
            ).fetchone()
            expired = conn.execute(
                "SELECT count(*) FROM pose_generations "
                "WHERE status = 'processing' AND lease_expires_at < now()"
            ).fetchone()
            assert stale is not None and expired is not None
            figures["seed_scan_matches"] = stale[0]
            figures["seed_scan_healthy_jobs_rerun"] = stale[1]
            figures["posegen_scan_matches"] = expired[0]

            seq_seed, _ = timed(lambda: conn.execute(SEED_SCAN).fetchall(), args.slow_reps)
            seq_plan = plan_of(conn, SEED_SCAN)
            seq_posegen, _ = timed(
                lambda: conn.execute(POSEGEN_SCAN, limit).fetchall(), args.slow_reps
            )

            build_seed = sum(build(conn, n, s) for n, s in SEED_INDEXES.items())
            seed_sizes = {n: index_size(conn, f'"{n}"') for n in SEED_INDEXES}
            t_seed, _ = timed(lambda: conn.execute(SEED_SCAN).fetchall(), args.reps, warmup=5)
            seed_plan = plan_of(conn, SEED_SCAN)
            for name in SEED_INDEXES:
                conn.execute(f'DROP INDEX "{name}"')  # type: ignore[arg-type]

            build_posegen = build(conn, POSEGEN_INDEX, POSEGEN_INDEX_SPEC)
            posegen_size = index_size(conn, POSEGEN_INDEX)
            t_posegen, _ = timed(
                lambda: conn.execute(POSEGEN_SCAN, limit).fetchall(), args.reps, warmup=5
            )
            posegen_plan = plan_of(conn, POSEGEN_SCAN, limit)
            table_size = index_size(conn, "pose_generations")

    assert POSEGEN_INDEX in posegen_plan, posegen_plan
    seed_total = sum(seed_sizes.values())
    figures.update(
        {
            "no_index_seed_scan": seq_seed,
            "no_index_posegen_scan": seq_posegen,
            "seed_indexes": t_seed,
            "posegen_partial_index": t_posegen,
            "seed_index_bytes": seed_sizes,
            "seed_index_total_bytes": seed_total,
            "posegen_index_bytes": posegen_size,
            "table_bytes": table_size,
            "seed_index_build_s": round(build_seed, 2),
            "posegen_index_build_s": build_posegen,
            "ratio_latency_seed_vs_posegen": round(t_seed["p50_ms"] / t_posegen["p50_ms"], 2),
            "ratio_latency_noindex_vs_posegen": round(seq_seed["p50_ms"] / t_posegen["p50_ms"], 1),
            "ratio_size_seed_vs_posegen": round(seed_total / max(posegen_size, 1), 1),
            "plans": {"no_index": seq_plan, "seed": seed_plan, "posegen": posegen_plan},
        }
    )

    def mb(n: int) -> str:
        return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} kB"

    print()
    table(
        [
            ("scan", "p50 ms", "p95 ms", "index size", "build s", "plan"),
            (
                "seed query, no index",
                f"{seq_seed['p50_ms']:.3f}",
                f"{seq_seed['p95_ms']:.3f}",
                "-",
                "-",
                seq_plan,
            ),
            (
                "seed query, seed's 2 composite indexes",
                f"{t_seed['p50_ms']:.3f}",
                f"{t_seed['p95_ms']:.3f}",
                mb(seed_total),
                f"{build_seed:.2f}",
                seed_plan,
            ),
            (
                "posegen query, no index",
                f"{seq_posegen['p50_ms']:.3f}",
                f"{seq_posegen['p95_ms']:.3f}",
                "-",
                "-",
                "-",
            ),
            (
                "posegen query, partial index",
                f"{t_posegen['p50_ms']:.3f}",
                f"{t_posegen['p95_ms']:.3f}",
                mb(posegen_size),
                f"{build_posegen:.2f}",
                posegen_plan,
            ),
        ]
    )
    print()
    print(f"latency, seed indexes / posegen partial: {figures['ratio_latency_seed_vs_posegen']}x")
    print(
        f"index size, seed / posegen: {figures['ratio_size_seed_vs_posegen']:,}x "
        f"(table {mb(table_size)})"
    )
    print(
        f"the seed's age-based scan matches {figures['seed_scan_matches']} running jobs, "
        f"{figures['seed_scan_healthy_jobs_rerun']} of them healthy (live lease); "
        f"posegen's lease scan matches {figures['posegen_scan_matches']}"
    )
    emit(figures)


def kill_main(args: argparse.Namespace) -> None:
    from recovery_kill import TARGET_MAX_S, TARGET_P50_S, kill_benchmark, restart_benchmark

    figures: dict[str, Any] = {"bench": "recovery-kill", **machine(), "lease_s": 60}
    figures["engines"] = kill_benchmark(args.admin_url, args.kills, not args.no_lease_baseline)
    if not args.no_restart:
        figures["postgres_restart"] = restart_benchmark()
        print(f"postgres restart: {figures['postgres_restart']}")
    figures["targets"] = {
        "p50_s": TARGET_P50_S,
        "max_s": TARGET_MAX_S,
        "met": all(e["fast"]["target_met"] for e in figures["engines"].values())
        and all(e["fast"]["duplicates"] == 0 for e in figures["engines"].values()),
    }
    figures["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    emit(figures)


if __name__ == "__main__":
    main()
