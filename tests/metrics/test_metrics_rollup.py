"""Top users from the rollup agree with a recount over the base tables, ties and limits included."""

from __future__ import annotations

import random

import pytest
from metrics_seed import TOP_USER_FIELDS, Seeded, add_generations, add_users, random_plan

from posegen.exceptions import InvalidInput
from posegen.metrics import rollup
from posegen.metrics.check import check


def expected_top(seeded: Seeded, limit: int) -> list[dict[str, object]]:
    """The seed's answer, computed in Python from what the test inserted."""
    users = sorted(seeded.generations, key=lambda u: (-seeded.generations[u], u))[:limit]
    return [
        {
            "userId": u,
            "userName": seeded.names[u][0],
            "userEmail": seeded.names[u][1],
            "generationCount": seeded.generations[u],
            "totalPoses": seeded.poses[u],
            "successRate": round(seeded.completed[u] / seeded.generations[u] + 1e-9, 2),
        }
        for u in users
    ]


def test_top_users_match_a_recount_of_the_base_tables(engine):
    seeded = Seeded()
    users = add_users(engine, seeded, 60)
    add_generations(engine, seeded, random_plan(users, 1500, random.Random(7)))
    report = check(engine, fix=True)  # builds the rollup rows from the base tables
    assert report.fixed and len(report.drift) == len(seeded.generations)

    got = [u.as_json() for u in rollup.top_users(engine, 100)]
    assert got == expected_top(seeded, 100)
    assert [u.as_json() for u in rollup.top_users(engine)] == expected_top(seeded, 10)
    assert set(got[0]) == TOP_USER_FIELDS
    # users without generations are not listed (the seed's INNER JOIN)
    idle = add_users(engine, seeded, 3, start=1000)
    check(engine, fix=True)
    assert not {u.user_id for u in rollup.top_users(engine, 100)} & set(idle)


def test_ties_go_to_the_lower_user_id(engine):
    seeded = Seeded()
    a, b, c, d = add_users(engine, seeded, 4)
    plan = [(u, "completed", 1) for u in (d, c, b) for _ in range(3)] + [(a, "failed", 0)] * 5
    add_generations(engine, seeded, plan)
    check(engine, fix=True)
    top = rollup.top_users(engine, 3)
    assert [u.user_id for u in top] == [a, b, c]
    assert [u.generation_count for u in top] == [5, 3, 3]
    assert top[0].success_rate == 0.0 and top[1].success_rate == 1.0
    assert [u.user_id for u in rollup.top_users(engine, 4)] == [a, b, c, d]


def test_the_query_run_is_the_one_db_verify_explains(engine):
    from posegen.db.verify import explain_uses_index

    assert rollup._TOP_USERS_SQL.text == rollup.TOP_USERS.sql
    assert explain_uses_index(engine, rollup.TOP_USERS)


@pytest.mark.parametrize("limit", [0, -1, 101, 1000])
def test_limits_outside_1_to_100_are_refused(limit):
    with pytest.raises(InvalidInput, match="between 1 and 100"):
        rollup.check_limit(limit)


@pytest.mark.parametrize(
    ("completed", "generations", "rate"),
    [(0, 0, 0.0), (1, 8, 0.13), (3, 8, 0.38), (2, 3, 0.67), (1, 3, 0.33), (5, 5, 1.0), (0, 4, 0.0)],
)
def test_success_rate_rounds_half_up_like_the_seed(completed, generations, rate):
    assert rollup.success_rate(completed, generations) == rate
