"""Property-based fuzzing of the OpenAPI schema with schemathesis: for every operation, generated
requests (valid and invalid) never get a 5xx, and every response matches the schema (status
code documented, content type, body, headers). Calls carry an admin key so they get past auth.

The schema is loaded from an app built on the test's database (both engines), and each
operation's strategy is driven by Hypothesis with a small, fixed example budget.
"""

from __future__ import annotations

import pytest
import schemathesis
from api_helpers import Api, Keys, claim_one, write_pose
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine

from posegen import queue
from posegen.api.app import create_app
from posegen.config import Settings

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 5}
#: Reads first, then writes, then what ends objects (archive, cancel, delete), so the seeded
#: objects (id 1 of each kind) live for most calls.
METHOD_ORDER = {"GET": 0, "POST": 1, "PATCH": 2, "PUT": 2, "DELETE": 4}


def _nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


#: Hostile shapes (each gave a bare 500 before): every operation gets each of them, through
#: schemathesis so its checks (no 5xx, documented status, problem+json) apply to the answers.
HUGE = 2**64
HOSTILE_PATH = (HUGE, 2**63, "1\x00")
HOSTILE_QUERY = (
    {"cursor": "WyIyMDI0LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwgMTg0NDY3NDQwNzM3MDk1NTE2MTZd"},
    {"cursor": "WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzE0OjAwIiwgMl0"},  # year 0 once in UTC
    {"from": "0000-01-01", "to": "99999-01-01"},
    {"from": "0001-01-01T00:00:00+14:00"},
    {"to": "99999999999999999999"},
    {"userId": HUGE, "projectId": HUGE, "limit": HUGE},
    {"q": "a\x00b", "category": "\x00", "tag": "\x00", "status": "\x00"},
)
HOSTILE_BODIES = (
    _nested(40),
    {"name": "a\x00b", "email": "a@b.c", "prompt": "x\x00", "slug": "s\x00"},
    {"projectId": HUGE, "poseIds": [HUGE], "seed": HUGE},
)


def _hostile_cases(operation: APIOperation) -> list[schemathesis.Case]:
    names = {p.name for p in operation.path_parameters}
    fill = {n: ("image" if n == "what" else "pg_abc" if n == "prefix" else 1) for n in names}
    cases = [
        operation.Case(path_parameters={**fill, n: bad})
        for n in names
        if n not in ("what", "prefix")
        for bad in HOSTILE_PATH
    ]
    cases += [operation.Case(path_parameters=fill, query=query) for query in HOSTILE_QUERY]
    if operation.body:
        cases += [
            operation.Case(path_parameters=fill, body=body, media_type="application/json")
            for body in HOSTILE_BODIES
        ]
    return cases


def _order(operation: APIOperation) -> int:
    if operation.path.endswith(("/archive", "/cancel")) and operation.method.upper() == "POST":
        return 3
    return METHOD_ORDER.get(operation.method.upper(), 1)


def _seed(api: Api, keys: Keys, engine: Engine, settings: Settings) -> None:
    """Objects at id 1 (project, generation, result) that the admin can reach, so the schema's
    examples (ids of 1) exercise the success paths, not only 404s."""
    project = api("POST", "/projects", key=keys.admin, json={"name": "fuzz"}).json()["id"]
    body = {"projectId": project, "poseIds": [1]}
    assert api("POST", "/generations", key=keys.admin, json=body).status_code == 202
    job = claim_one(engine, settings)
    write_pose(engine, settings, job, 1, 0)
    queue.finish(engine, job.id, job.lease_token)


# Every operation gets its examples: the time grows with the API (about 100 s on SQLite on the
# loaded 2-core machine once the community routes came), past the suite's default 120 s.
@pytest.mark.timeout(300)
def test_openapi_fuzz(settings: Settings, engine: Engine, keys: Keys, library: None) -> None:
    # Streams end quickly (a fuzzed pending generation would otherwise stream until its end),
    # and the per-minute budget is out of the way so more than rate limiting gets exercised.
    app = create_app(
        settings.model_copy(update={"sse_max_seconds": 0.3, "submissions_per_minute": 10_000}),
        engine,
    )
    with TestClient(app) as client:
        _seed(Api(client), keys, engine, settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {keys.admin}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25
    operations.sort(key=_order)
    for operation in operations:
        strategies = [
            (mode, budget, operation.as_strategy(generation_mode=mode))
            for mode, budget in EXAMPLES.items()
        ]
        strategies += [
            (GenerationMode.POSITIVE, 1, strategy)
            for strategy in schema.get_strategies_from_examples(operation)
        ]
        for mode, budget, strategy in strategies:

            @given(case=strategy)
            @hypothesis_settings(
                max_examples=budget,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                check()
            except Unsatisfiable:
                # Nothing to make invalid (no parameters, no body): only positive cases exist.
                assert mode is GenerationMode.NEGATIVE, operation.label
        for case in _hostile_cases(operation):
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            assert response.status_code < 500, (operation.label, case.query, case.body)
