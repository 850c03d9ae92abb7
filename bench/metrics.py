"""Top users on 1M generations: the seed's N+1 ("before"), the seed's JOIN ("after"), posegen.

The seed replaced an N+1 (GROUP BY userId, then one query per user) with one JOIN + GROUP BY over
all generations. Both read every generation. posegen reads the first ``limit`` entries of the
rollup's index. All three run here on the same data, in the same run; the script checks that they
return the same top 10, then prints latency and ratios and ends with one JSON line.

    .venv/bin/python bench/metrics.py                       # 1,000,000 generations, 100,000 users
    .venv/bin/python bench/metrics.py --generations 100000 --users 10000 --reps 3
"""

from __future__ import annotations

import sys

# Running bench/x.py puts bench/ first on sys.path, where bench/queue.py (the queue benchmark)
# would shadow the standard library's queue module; look there last.
sys.path.append(sys.path.pop(0))

import argparse
import time
from typing import Any

import psycopg

from pgbench_util import (
    add_database_args,
    connect,
    emit,
    engine_for,
    load_users,
    machine,
    migrated_database,
    server_version,
    table,
    timed,
)
from posegen.db.hot_queries import TOP_USERS
from posegen.db.verify import explain_uses_index
from posegen.metrics import check, rollup

LIMIT = 10

# Zipf-like with s = 1: floor(exp(U * ln(users + 1))) gives P(k) = ln(1 + 1/k) / ln(users + 1),
# so user 1 has ~6% of all generations at 100k users and most users have a few.
LOAD_GENERATIONS = """
INSERT INTO pose_generations (
    user_id, project_id, type, selected_pose_ids, variations, total_expected_poses,
    width, height, status, priority, poses_completed, poses_failed, attempts, max_attempts,
    run_after, lease_token, cancel_requested, created_at, started_at, completed_at)
SELECT u, u, 'library', '[1, 2]', 2, 4, 512, 512,
       CASE WHEN r < 0.85 THEN 'completed' WHEN r < 0.90 THEN 'partial'
            WHEN r < 0.95 THEN 'failed' WHEN r < 0.98 THEN 'cancelled'
            WHEN r < 0.99 THEN 'pending' ELSE 'processing' END,
       0, CASE WHEN r < 0.85 THEN 4 WHEN r < 0.90 THEN 2 ELSE 0 END,
       CASE WHEN r >= 0.85 AND r < 0.90 THEN 2 ELSE 0 END,
       1, 3, ts, 1, false, ts, ts, ts + interval '40 seconds'
FROM (
    SELECT LEAST(%(users)s, floor(exp(random() * ln(%(users)s + 1)))::int) AS u,
           random() AS r,
           now() - random() * interval '90 days' AS ts
    FROM generate_series(1, %(generations)s)
) s
"""

BUILD_ROLLUP = """
INSERT INTO user_generation_stats
    (user_id, generations, completed, partial, failed, cancelled, poses_completed, updated_at)
SELECT user_id, count(*), count(*) FILTER (WHERE status = 'completed'),
       count(*) FILTER (WHERE status = 'partial'), count(*) FILTER (WHERE status = 'failed'),
       count(*) FILTER (WHERE status = 'cancelled'), sum(poses_completed), now()
FROM pose_generations GROUP BY user_id
"""

# The seed's "before": Prisma groupBy (one query), then one user look-up per row.
BEFORE_GROUP = (
    "SELECT user_id, COUNT(id) AS generation_count, COALESCE(SUM(poses_completed), 0) AS poses, "
    "COUNT(CASE WHEN status = 'completed' THEN 1 END) AS successful "
    "FROM pose_generations GROUP BY user_id ORDER BY COUNT(id) DESC LIMIT %s"
)
BEFORE_USER = "SELECT name, email FROM users WHERE id = %s"

# The seed's "after", verbatim but for snake_case column names.
AFTER = """
    SELECT
      u.id as "userId",
      u.name as "userName",
      u.email as "userEmail",
      COUNT(pg.id) as "generationCount",
      COALESCE(SUM(pg.poses_completed), 0) as "totalPoses",
      COUNT(CASE WHEN pg.status = 'completed' THEN 1 END) as "successfulGens"
    FROM users u
    INNER JOIN pose_generations pg ON pg.user_id = u.id
    GROUP BY u.id, u.name, u.email
    ORDER BY COUNT(pg.id) DESC
    LIMIT %s
"""

POSEGEN = TOP_USERS.sql.replace(":limit", "%s")

Row = tuple[int, str, str, int, int, float]


def row(user_id: Any, name: Any, email: Any, count: Any, poses: Any, completed: Any) -> Row:
    return (
        int(user_id),
        name,
        email,
        int(count),
        int(poses),
        rollup.success_rate(int(completed), int(count)),
    )


def before(conn: psycopg.Connection[Any]) -> list[Row]:
    out = []
    for user_id, count, poses, ok in conn.execute(BEFORE_GROUP, (LIMIT,)).fetchall():
        got = conn.execute(BEFORE_USER, (user_id,)).fetchone()
        assert got is not None
        out.append(row(user_id, got[0], got[1], count, poses, ok))
    return out


def after(conn: psycopg.Connection[Any]) -> list[Row]:
    return [row(*r) for r in conn.execute(AFTER, (LIMIT,)).fetchall()]


def posegen_sql(conn: psycopg.Connection[Any]) -> list[Row]:
    return [
        row(uid, name, email, gens, poses, completed)
        for uid, name, email, gens, completed, poses in conn.execute(POSEGEN, (LIMIT,)).fetchall()
    ]


def same_answer(answers: dict[str, list[Row]]) -> bool:
    """All equal; the seed's queries break ties arbitrarily, so ties must not cross the cut."""
    first = next(iter(answers.values()))
    counts = [r[3] for r in first]
    if len(set(counts)) != len(counts):
        print("note: ties among the top 10 counts; comparing as sets per count")
        return all(sorted(a) == sorted(first) for a in answers.values())
    return all(a == first for a in answers.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--generations", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5, help="repetitions of each seed query")
    ap.add_argument("--fast-reps", type=int, default=2000, help="repetitions of posegen's query")
    add_database_args(ap)
    args = ap.parse_args()

    with migrated_database(args.admin_url, "posegen_bench_metrics", args.keep) as url:
        figures: dict[str, Any] = {
            "bench": "metrics",
            **machine(),
            "generations": args.generations,
            "users": args.users,
        }
        with connect(url) as conn:
            figures["postgres"] = server_version(conn)
            t0 = time.perf_counter()
            load_users(conn, args.users)
            conn.execute("SELECT setseed(0.42)")
            conn.execute(LOAD_GENERATIONS, {"users": args.users, "generations": args.generations})
            conn.execute("VACUUM ANALYZE pose_generations")
            conn.execute("VACUUM ANALYZE users")
            figures["load_s"] = round(time.perf_counter() - t0, 1)
            t0 = time.perf_counter()
            conn.execute(BUILD_ROLLUP)
            conn.execute("VACUUM ANALYZE user_generation_stats")
            figures["rollup_build_s"] = round(time.perf_counter() - t0, 2)
            active = conn.execute("SELECT count(*) FROM user_generation_stats").fetchone()
            figures["users_with_generations"] = active[0] if active else 0
            print(
                f"loaded {args.generations:,} generations over {args.users:,} users "
                f"({figures['users_with_generations']:,} with any) in {figures['load_s']} s"
            )

            t_before, a_before = timed(lambda: before(conn), args.reps)
            t_after, a_after = timed(lambda: after(conn), args.reps)
            t_sql, a_sql = timed(lambda: posegen_sql(conn), args.fast_reps, warmup=20)

        with engine_for(url) as engine:
            assert explain_uses_index(engine, TOP_USERS), "top users does not use its index"
            t_fn, a_fn = timed(lambda: rollup.top_users(engine, LIMIT), args.fast_reps, warmup=20)
            t0 = time.perf_counter()
            report = check.check(engine)
            figures["rollup_check_s"] = round(time.perf_counter() - t0, 2)
            assert report.ok, f"rollup drift after build: {len(report.drift)} users"
        fn_rows = [
            (
                u.user_id,
                u.user_name,
                u.user_email,
                u.generation_count,
                u.total_poses,
                u.success_rate,
            )
            for u in a_fn
        ]

        answers = {"before": a_before, "after": a_after, "posegen_sql": a_sql, "posegen": fn_rows}
        figures["same_top10"] = same_answer(answers)
        figures.update(
            {"before": t_before, "after": t_after, "posegen_sql": t_sql, "posegen_function": t_fn}
        )
        p = t_sql["p50_ms"]
        figures["ratio_after_vs_posegen"] = round(t_after["p50_ms"] / p, 1)
        figures["ratio_before_vs_posegen"] = round(t_before["p50_ms"] / p, 1)
        figures["ratio_after_vs_before"] = round(t_after["p50_ms"] / t_before["p50_ms"], 2)
        figures["target_met"] = bool(
            figures["same_top10"] and figures["ratio_after_vs_posegen"] >= 1000 and p < 1.0
        )

    print()
    table(
        [
            ("query", "p50 ms", "p95 ms", "min ms", "reps"),
            *[
                (
                    name,
                    f"{t['p50_ms']:.3f}",
                    f"{t['p95_ms']:.3f}",
                    f"{t['min_ms']:.3f}",
                    str(t["reps"]),
                )
                for name, t in (
                    ("seed before (GROUP BY + 10 look-ups)", t_before),
                    ("seed after (JOIN + GROUP BY)", t_after),
                    ("posegen rollup (SQL)", t_sql),
                    ("posegen rollup (top_users())", t_fn),
                )
            ],
        ]
    )
    print()
    print(f"top 10 identical across all four: {figures['same_top10']}")
    print(f"seed after / posegen:  {figures['ratio_after_vs_posegen']:,.1f}x")
    print(f"seed before / posegen: {figures['ratio_before_vs_posegen']:,.1f}x")
    print(
        f"seed after / seed before: {figures['ratio_after_vs_before']}x (the seed's fix was slower)"
    )
    print(f"rollup recount check over all generations: {figures['rollup_check_s']} s")
    verdict = "met" if figures["target_met"] else "NOT met"
    print(f"target (>=1000x the seed's query, p50 < 1 ms): {verdict}")
    emit(figures)


if __name__ == "__main__":
    main()
