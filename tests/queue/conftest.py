"""Fixtures for the queue tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from queue_helpers import Owner
from sqlalchemy import Engine

from posegen.config import Settings


@pytest.fixture
def owner(engine: Engine) -> Owner:
    return Owner(engine)


@pytest.fixture
def tuned(settings: Settings) -> Callable[..., Settings]:
    """The test's settings with some values changed (same database and data dir)."""

    def make(**overrides: Any) -> Settings:
        return settings.model_copy(update=overrides)

    return make
