"""Probes, authentication, and the problem+json shape of every kind of error."""

from __future__ import annotations

import pytest
from api_helpers import Api, Keys, problem_of
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from posegen.api.app import create_app
from posegen.config import Settings
from posegen.db import migrate


def test_healthz_needs_no_key_and_says_nothing_more(api: Api) -> None:
    for path in ("/healthz", "/api/pose-generator/healthz"):
        r = api("GET", path)
        assert r.status_code == 200
        assert r.json() == {"status": "ok"}


def test_readyz_checks_database_and_migrations(api: Api, engine: Engine) -> None:
    r = api("GET", "/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "database": "ok", "migrations": "head"}
    migrate.downgrade(engine, "-1")
    body = problem_of(api("GET", "/readyz"), 503)
    assert body["kind"] == "not-migrated"
    migrate.upgrade(engine)
    assert api("GET", "/readyz").status_code == 200


def test_readyz_is_503_when_the_database_is_unreachable(settings: Settings, tmp_path) -> None:
    from posegen.db.engine import make_engine

    bad = settings.model_copy(
        update={
            "database_url": "postgresql://nobody@127.0.0.1:1/none",
            "db_connect_timeout_seconds": 1,
        }
    )
    engine = make_engine(bad)
    with TestClient(create_app(bad, engine)) as client:
        body = problem_of(client.get("/readyz"), 503)
    engine.dispose()
    assert "127.0.0.1" not in body["detail"]


def test_missing_wrong_and_revoked_keys_are_401(api: Api, keys: Keys) -> None:
    body = problem_of(api("GET", "/projects"), 401)
    assert body["kind"] == "unauthorized"
    r = api("GET", "/projects", key="pg_not-a-real-key")
    problem_of(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"
    problem_of(api("GET", "/projects", headers={"Authorization": "Basic dXNlcjpwdw=="}), 401)
    assert api("GET", "/projects", key=keys.user).status_code == 200
    prefix = keys.user[:10]
    assert api("DELETE", f"/admin/keys/{prefix}", key=keys.admin).json() == {"revoked": 1}
    problem_of(api("GET", "/projects", key=keys.user), 401)


def test_user_role_gets_403_on_admin_routes(api: Api, keys: Keys) -> None:
    body = problem_of(api("GET", "/admin/users", key=keys.user), 403)
    assert body["kind"] == "forbidden"
    users = api("GET", "/admin/users", key=keys.admin).json()
    assert {u["role"] for u in users} == {"user", "admin"}
    assert all("activeKeys" in u for u in users)


def test_unknown_route_and_wrong_method_are_problems(api: Api, keys: Keys) -> None:
    assert problem_of(api("GET", "/nope", key=keys.user), 404)["kind"] == "not-found"
    r = api("PUT", "/projects", key=keys.user)
    assert problem_of(r, 405)["kind"] == "method-not-allowed"
    assert r.headers["allow"]


def test_validation_errors_are_422_problems_without_echoing_input(api: Api, keys: Keys) -> None:
    r = api("GET", "/generations", key=keys.user, params={"limit": "lots"})
    body = problem_of(r, 422)
    assert body["kind"] == "invalid-input"
    assert body["errors"][0]["loc"] == ["query", "limit"]
    assert "input" not in body["errors"][0]
    r = api("GET", "/generations/99999999999999999999999", key=keys.user)
    problem_of(r, 422)


@pytest.mark.parametrize(
    "content",
    [b"{", b'{"name": ', b"\xff\xfe", b"[1,2", b"null"],
)
def test_malformed_json_is_422(api: Api, keys: Keys, content: bytes) -> None:
    for path in ("/projects", "/generations"):
        r = api(
            "POST",
            path,
            key=keys.user,
            content=content,
            headers={"Content-Type": "application/json"},
        )
        assert problem_of(r, 422)["kind"] == "invalid-input"


def test_unexpected_errors_are_a_bare_500(settings: Settings, engine: Engine, keys: Keys) -> None:
    app: FastAPI = create_app(settings, engine)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("SELECT secret FROM vault at /srv/secret/path")

    with TestClient(app, raise_server_exceptions=False) as client:
        r = client.get("/boom")
    body = problem_of(r, 500)
    assert body["kind"] == "internal"
    assert "secret" not in r.text and "Traceback" not in r.text


def test_body_over_the_limit_is_413_problem(settings: Settings, engine: Engine, keys: Keys) -> None:
    small = settings.model_copy(update={"max_body_bytes": 2048})
    with TestClient(create_app(small, engine)) as client:
        headers = {"Authorization": f"Bearer {keys.user}", "Content-Type": "application/json"}
        big = b'{"name": "' + b"x" * 4000 + b'"}'
        r = client.post("/api/pose-generator/projects", content=big, headers=headers)
        assert problem_of(r, 413)["kind"] == "payload-too-large"

        def chunks():  # no Content-Length: counted while read
            yield b'{"name": "'
            for _ in range(10):
                yield b"x" * 500
            yield b'"}'

        r = client.post("/api/pose-generator/projects", content=chunks(), headers=headers)
        assert problem_of(r, 413)["kind"] == "payload-too-large"
        # Even routes that never read a body refuse it.
        r = client.post(
            "/api/pose-generator/admin/recovery/run",
            content=big,
            headers={**headers, "Authorization": f"Bearer {keys.admin}"},
        )
        problem_of(r, 413)
        ok = client.post("/api/pose-generator/projects", json={"name": "small"}, headers=headers)
        assert ok.status_code == 201


def test_cors_is_off_unless_origins_are_configured(
    settings: Settings, engine: Engine, api: Api
) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    r = api("OPTIONS", "/projects", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    cors = settings.model_copy(update={"cors_origins": "https://app.example"})
    open_app = create_app(cors, engine)
    with TestClient(open_app) as client:
        r = client.options("/api/pose-generator/projects", headers=preflight)
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = client.options(
            "/api/pose-generator/projects",
            headers={**preflight, "Origin": "https://evil.example"},
        )
        assert "access-control-allow-origin" not in r.headers


def test_openapi_is_served_and_docs_are_off_by_default(api: Api) -> None:
    schema = api("GET", "/openapi.json").json()
    assert "/api/pose-generator/generations" in schema["paths"]
    assert schema["components"]["securitySchemes"]
    # Swagger UI would load its script from a CDN: not served unless POSEGEN_API_DOCS is on.
    assert api("GET", "/docs").status_code == 404
