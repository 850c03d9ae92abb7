"""Hostile input shapes against every route (API and dashboard), on both engines.

Each shape gave a bare 500 somewhere before (an overflowing bind, PostgreSQL refusing NUL, the
JSON parser's RecursionError, a timestamp whose UTC value is in year 0). The routes are listed
from the app itself, so a route added later is covered without editing this table.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from api_helpers import Keys, png
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from posegen.api.app import create_app
from posegen.api.input_guard import MAX_JSON_DEPTH, json_problem, target_problem
from posegen.config import Settings

BIG = str(2**64)
JUST_OVER = str(2**63)
PARAM = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")
#: Values for path parameters that are not ids.
WORDS = {"what": "image", "kind": "image", "prefix": "pg_abcdef"}


def cursor(*values: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


#: Query values that break a route that reads them; routes that do not read them ignore them.
QUERY_SHAPES = {
    "cursor-big-id": {"cursor": cursor("2024-01-01T00:00:00+00:00", 2**64)},
    "cursor-negative-id": {"cursor": cursor("2024-01-01T00:00:00+00:00", -(2**64))},
    "cursor-big-single": {"cursor": cursor(2**64)},
    "cursor-year-0": {"cursor": cursor("0001-01-01T00:00:00+14:00", 1)},
    "cursor-year-10000": {"cursor": cursor("9999-12-31T23:59:59-14:00", 1)},
    "from-year-0": {"from": "0000-01-01"},
    "from-year-0-in-utc": {"from": "0001-01-01T00:00:00+14:00"},
    "to-year-99999": {"to": "99999-01-01"},
    "to-year-10000-in-utc": {"to": "9999-12-31T23:59:59-14:00"},
    "epoch-huge": {"from": "1", "to": "99999999999999999999"},
    "epoch-negative": {"from": "-99999999999999", "to": "1"},
    "ids-big": {"userId": BIG, "projectId": BIG, "limit": BIG},
}
#: Bodies sent to every route that takes one (and to the others: they must not care).
DEEP = "[" * 100_000 + "]" * 100_000
BODY_SHAPES = {
    "json-deep-array": ("application/json", DEEP.encode()),
    "json-deep-in-field": (
        "application/json",
        ('{"name": ' + "[" * 5000 + "]" * 5000 + "}").encode(),
    ),
    "json-nul-value": ("application/json", b'{"name": "a\\u0000b", "email": "x@y.z"}'),
    "json-nul-key": ("application/json", b'{"na\\u0000me": "a"}'),
    "form-nul": ("application/x-www-form-urlencoded", b"name=a%00b&csrf_token=x"),
}
QUERY_READERS = {"cursor", "from", "to", "userId", "projectId", "limit", "period"}


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    query: frozenset[str]

    def path(self, id_value: str = "1") -> str:
        return PARAM.sub(lambda m: WORDS.get(m.group(1), id_value), self.template)

    @property
    def has_id(self) -> bool:
        return any(name not in WORDS for name in PARAM.findall(self.template))

    @property
    def is_page(self) -> bool:
        return self.template.startswith("/ui")


def routes_of(routes: list[Any], prefix: str = "") -> list[Route]:
    """Every API and page route, through included routers (whichever way FastAPI keeps them)."""
    out = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context_prefix = getattr(getattr(route, "include_context", None), "prefix", "")
            out += routes_of(included.routes, prefix + context_prefix)
        elif isinstance(route, APIRoute):
            query = frozenset(p.alias for p in route.dependant.query_params)
            for method in sorted(route.methods - {"HEAD"}):
                out.append(Route(method, prefix + route.path, query))
    return sorted(set(out), key=lambda r: (r.template, r.method))


@pytest.fixture
def hostile(settings: Settings, engine: Engine, keys: Keys) -> Iterator[tuple[TestClient, list]]:
    app = create_app(settings.model_copy(update={"sse_max_seconds": 0.2}), engine)
    with TestClient(app, raise_server_exceptions=False) as client:
        form = client.get("/ui/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        signed = client.post(
            "/ui/sign-in",
            data={"csrf_token": token.group(1), "api_key": keys.admin, "next": ""},
            follow_redirects=False,
        )
        assert signed.status_code == 303
        client.headers["Authorization"] = f"Bearer {keys.admin}"
        routes = routes_of(app.routes)
        assert len(routes) >= 45, routes  # API and dashboard both listed
        yield client, routes


def refused(response: httpx.Response, kind: str | None, where: str) -> None:
    """A 4xx problem document (of ``kind`` when given)."""
    assert 400 <= response.status_code < 500, (where, response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/problem+json"), where
    if kind is not None:
        assert response.json()["kind"] == kind, (where, response.text[:300])


def not_a_server_error(response: httpx.Response, where: str) -> None:
    assert response.status_code < 500, (where, response.status_code, response.text[:300])
    if response.status_code >= 400 and not where.split()[1].startswith("/ui"):
        assert response.headers["content-type"].startswith("application/problem+json"), where


def test_every_route_refuses_every_shape(hostile: tuple[TestClient, list[Route]]) -> None:
    client, routes = hostile
    checked = 0
    for route in routes:
        # NUL in the path and in the query: refused before the route runs.
        if route.has_id or "{" not in route.template:
            where = f"{route.method} {route.template} nul-in-query"
            refused(client.request(route.method, route.path() + "?q=%00"), "nul-byte", where)
        if route.has_id:
            for value in (BIG, JUST_OVER, "9" * 5000):
                where = f"{route.method} {route.template} id={value[:20]}"
                response = client.request(route.method, route.path(value))
                refused(response, "id-out-of-range", where)
            where = f"{route.method} {route.template} nul-in-path"
            refused(client.request(route.method, route.path("1%00")), "nul-byte", where)
        # Numbers, cursors and timestamps beyond what the database or datetime can hold.
        for name, params in QUERY_SHAPES.items():
            where = f"{route.method} {route.template} {name}"
            response = client.request(route.method, route.path(), params=params)
            if route.query & set(params) and not route.is_page:
                refused(response, None, where)
            else:
                not_a_server_error(response, where)
        # Bodies: every route, whether it reads one or not.
        for name, (media, body) in BODY_SHAPES.items():
            where = f"{route.method} {route.template} {name}"
            response = client.request(
                route.method, route.path(), content=body, headers={"content-type": media}
            )
            expected = "json-too-deep" if "deep" in name else "nul-byte"
            refused(response, expected, where)
        checked += 1
    assert checked == len(routes)


def test_dashboard_pages_refuse_bad_cursors_and_limits(
    hostile: tuple[TestClient, list[Route]],
) -> None:
    """Pages answer a 4xx page (HTML, for the browser) where the API answers a problem."""
    client, _ = hostile
    for path, params in [
        ("/ui/generations", QUERY_SHAPES["cursor-big-id"]),
        ("/ui/generations", QUERY_SHAPES["cursor-year-0"]),
        ("/ui/library", QUERY_SHAPES["cursor-big-single"]),
        ("/ui/top-users", {"limit": BIG}),
        ("/ui/overview", {"period": "x" * 5000}),
    ]:
        response = client.get(path, params=params)
        assert 400 <= response.status_code < 500, (path, params, response.status_code)


def test_valid_bodies_and_nesting_pass(hostile: tuple[TestClient, list[Route]]) -> None:
    """The guard lets ordinary requests through: a project, escaped backslashes, 32 levels."""
    client, _ = hostile
    made = client.post("/api/pose-generator/projects", json={"name": "back\\u0000slash \\"})
    assert made.status_code == 201, made.text
    assert made.json()["name"] == "back\\u0000slash \\"
    nested: object = 1
    for _ in range(MAX_JSON_DEPTH):
        nested = [nested]
    assert json_problem(json.dumps(nested).encode()) is None
    assert json_problem(json.dumps([nested]).encode()) is not None
    assert json_problem(json.dumps({"a": [1] * 100_000, "b": nested[0]}).encode()) is None
    assert json_problem(json.dumps([[1]] * 70_000 + [nested]).encode()) is not None  # 2nd chunk
    assert json_problem(b'{"a": "\\\\u0000"}') is None  # an escaped backslash, then "u0000"
    assert json_problem(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}') is None
    assert target_problem("/api/pose-generator/projects/" + str(2**63 - 1), b"") is None


def test_multipart_fields_are_checked_too(hostile: tuple[TestClient, list[Route]]) -> None:
    """Multipart bodies stream past the guard (they carry images); their text fields are
    checked where they are read: NUL by the request models, deep JSON text before parsing."""
    client, _ = hostile
    image = ("s.png", png(), "image/png")
    named = client.post(
        "/api/pose-generator/projects", data={"name": "a\x00b"}, files={"subject": image}
    )
    refused(named, "invalid-input", "multipart project name with NUL")
    deep = client.post(
        "/api/pose-generator/library/poses",
        data={
            "slug": "deep",
            "name": "deep",
            "categorySlug": "standing",
            "keypoints": "[" * 5000 + "]" * 5000,
        },
        files={"map": ("m.png", png(), "image/png")},
    )
    refused(deep, "json-too-deep", "multipart keypoints nested 5000 deep")
    page = client.get("/ui/generations/new")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    dashboard = client.post(
        "/ui/projects",
        data={"csrf_token": token.group(1), "name": "a\x00b"},
        files={"subject": ("", b"", "application/octet-stream")},
        follow_redirects=False,
    )
    assert dashboard.status_code == 422, dashboard.text[:300]
