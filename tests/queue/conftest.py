"""Fixtures for the queue tests."""

from __future__ import annotations

import pytest
from queue_helpers import Owner
from sqlalchemy import Engine


@pytest.fixture
def owner(engine: Engine) -> Owner:
    return Owner(engine)
