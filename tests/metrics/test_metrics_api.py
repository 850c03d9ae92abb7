"""The metrics endpoints over HTTP: roles, limits, the seed's fields, caching, and /metrics."""

from __future__ import annotations

import random

import pytest
from fastapi.testclient import TestClient
from metrics_seed import TOP_USER_FIELDS, Seeded, add_generations, add_users, random_plan
from pydantic import SecretStr
from sqlalchemy import text

from posegen import accounts
from posegen.api.app import create_app
from posegen.db.models import Role
from posegen.metrics import rollup
from posegen.metrics.check import check

BASE = "/api/pose-generator/metrics"


@pytest.fixture
def api(settings, engine):
    """An app with a 60 s metrics cache and a scrape token, plus an admin and a user key."""
    app_settings = settings.model_copy(
        update={"metrics_cache_ttl_seconds": 60.0, "metrics_token": SecretStr("scrape-me")}
    )
    admin = accounts.create_user(engine, "Admin", "admin@example.com", Role.ADMIN).api_key
    user = accounts.create_user(engine, "Plain", "plain@example.com", Role.USER).api_key
    seeded = Seeded()
    ids = add_users(engine, seeded, 30)
    add_generations(engine, seeded, random_plan(ids, 400, random.Random(11)))
    check(engine, fix=True)
    with TestClient(create_app(app_settings, engine)) as client:
        yield client, {"Authorization": f"Bearer {admin}"}, {"Authorization": f"Bearer {user}"}


def test_top_users_for_admins_only(api, engine):
    client, admin, user = api
    assert client.get(f"{BASE}/top-users").status_code == 401
    bad = client.get(f"{BASE}/top-users", headers={"Authorization": "Bearer pg_nope"})
    assert bad.status_code == 401
    forbidden = client.get(f"{BASE}/top-users", headers=user)
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"].startswith("application/problem+json")

    ok = client.get(f"{BASE}/top-users", headers=admin)
    assert ok.status_code == 200
    body = ok.json()
    assert list(body) == ["users"] and len(body["users"]) == 10
    assert body == {"users": [u.as_json() for u in rollup.top_users(engine, 10)]}
    assert set(body["users"][0]) == TOP_USER_FIELDS
    three = client.get(f"{BASE}/top-users", params={"limit": 3}, headers=admin).json()
    assert three["users"] == body["users"][:3]
    hundred = client.get(f"{BASE}/top-users", params={"limit": 100}, headers=admin)
    assert hundred.status_code == 200 and len(hundred.json()["users"]) <= 100


@pytest.mark.parametrize("limit", ["0", "101", "-5", "ten"])
def test_limits_outside_1_to_100_are_422(api, limit):
    client, admin, _ = api
    resp = client.get(f"{BASE}/top-users", params={"limit": limit}, headers=admin)
    assert resp.status_code == 422
    assert resp.json()["kind"] == "invalid-input"


def test_answers_are_cached_for_the_ttl(api, engine):
    client, admin, _ = api
    first = client.get(f"{BASE}/top-users", params={"limit": 2}, headers=admin).json()
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE user_generation_stats SET generations = generations + 10000 "
                "WHERE user_id = :u"
            ),
            {"u": first["users"][1]["userId"]},
        )
    again = client.get(f"{BASE}/top-users", params={"limit": 2}, headers=admin).json()
    assert again == first  # served from the cache
    client.app.state.metrics_cache.clear()
    fresh = client.get(f"{BASE}/top-users", params={"limit": 2}, headers=admin).json()
    assert fresh["users"][0]["userId"] == first["users"][1]["userId"]


def test_summary_errors_popular_poses(api):
    client, admin, user = api
    for path in ("summary", "errors", "popular-poses"):
        assert client.get(f"{BASE}/{path}", headers=user).status_code == 403
        resp = client.get(f"{BASE}/{path}", params={"period": "all"}, headers=admin)
        assert resp.status_code == 200, resp.text
        assert resp.json()["period"] == "all"
        bad = client.get(f"{BASE}/{path}", params={"period": "2w"}, headers=admin)
        assert bad.status_code == 422 and "period must be one of" in bad.json()["detail"]
    s = client.get(f"{BASE}/summary", params={"period": "all"}, headers=admin).json()
    assert s["generations"]["total"] == 400
    custom = client.get(
        f"{BASE}/summary",
        params={"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"},
        headers=admin,
    ).json()
    assert custom["period"] == "custom" and custom["generations"]["total"] == 0
    both = client.get(
        f"{BASE}/summary", params={"period": "1h", "from": "2020-01-01"}, headers=admin
    )
    assert both.status_code == 422


SERIES = (
    "posegen_http_request_duration_seconds",
    "posegen_queue_depth",
    "posegen_queue_lag_seconds",
    "posegen_queue_oldest_pending_age_seconds",
    "posegen_claims_total",
    "posegen_completions_total",
    "posegen_recoveries_total",
    "posegen_lease_losses_total",
    "posegen_generator_seconds",
    "posegen_map_cache_hits_total",
    "posegen_map_cache_misses_total",
    "posegen_map_cache_coalesced_total",
    "posegen_map_cache_origin_fetches_total",
    "posegen_db_pool_connections",
    "posegen_metrics_cache_requests_total",
)


def test_prometheus_exposition(api, engine):
    client, admin, user = api
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=user).status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    client.get(f"{BASE}/top-users", headers=admin)

    scraped = client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    body = scraped.text
    for name in SERIES:
        assert f"# TYPE {name} " in body, name
    assert "_created" not in body  # creation-time gauges are switched off
    with engine.connect() as conn:
        pending = conn.execute(
            text("SELECT count(*) FROM pose_generations WHERE status = 'pending'")
        ).scalar_one()
    assert f'posegen_queue_depth{{status="pending"}} {float(pending)}' in body
    assert "posegen_queue_scrape_ok 1.0" in body
    # latency is labelled by route template, never by raw path
    assert (
        'posegen_http_request_duration_seconds_count{method="GET",'
        'route="/api/pose-generator/metrics/top-users",status="200"}'
    ) in body
    assert client.get("/metrics", headers=admin).status_code == 200
