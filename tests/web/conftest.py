"""Dashboard fixtures: the real app (API + dashboard) per test database, and three accounts."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from web_helpers import People

from posegen import accounts
from posegen.api.app import create_app
from posegen.config import Settings
from posegen.db.models import Role
from posegen.library import seed_library


@pytest.fixture
def people(engine: Engine) -> People:
    seed_library(engine)
    return People(
        accounts.create_user(engine, "Uma User", "uma@example.com"),
        accounts.create_user(engine, "Olaf Other", "olaf@example.com"),
        accounts.create_user(engine, "Ada Admin", "ada@example.com", Role.ADMIN),
    )


@pytest.fixture
def app(settings: Settings, engine: Engine, people: People) -> FastAPI:
    return create_app(settings, engine)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def make_client(app: FastAPI) -> Iterator[object]:
    """Factory for more browsers (each with its own cookie jar)."""
    made: list[TestClient] = []

    def factory(base_url: str = "http://testserver") -> TestClient:
        c = TestClient(app, base_url=base_url)
        c.__enter__()
        made.append(c)
        return c

    yield factory
    for c in made:
        c.__exit__(None, None, None)
