"""API fixtures: an app per test database, a client, and three accounts (user, other, admin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from api_helpers import Api, Keys
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from posegen import accounts
from posegen.api.app import create_app
from posegen.config import Settings
from posegen.db.models import Role
from posegen.library import seed_library


@pytest.fixture
def keys(engine: Engine) -> Keys:
    user = accounts.create_user(engine, "Uma User", "uma@example.com")
    other = accounts.create_user(engine, "Olaf Other", "olaf@example.com")
    admin = accounts.create_user(engine, "Ada Admin", "ada@example.com", Role.ADMIN)
    return Keys(
        user.api_key,
        other.api_key,
        admin.api_key,
        user.account.id,
        other.account.id,
        admin.account.id,
    )


@pytest.fixture
def library(engine: Engine) -> None:
    seed_library(engine)


@pytest.fixture
def app(settings: Settings, engine: Engine) -> FastAPI:
    return create_app(settings, engine)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c


@pytest.fixture
def api(client: TestClient) -> Api:
    return Api(client)
