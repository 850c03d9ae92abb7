"""Fixtures for map tests: a local origin, and settings without a database (maps need none)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from maps_origin import Origin
from maps_settings import map_settings

from posegen.config import Settings
from posegen.controlnet import MapCache


@pytest.fixture
def origin() -> Iterator[Origin]:
    server = Origin().start()
    yield server
    server.stop()


@pytest.fixture
def make_settings(tmp_path: Path) -> Any:
    def make(**overrides: Any) -> Settings:
        return map_settings(tmp_path / "data", **overrides)

    return make


@pytest.fixture
def msettings(make_settings: Any) -> Settings:
    """Allow-listed 127.0.0.1, short deadline, failures not remembered (tests retry)."""
    return make_settings()  # type: ignore[no-any-return]


@pytest.fixture
def cache(msettings: Settings) -> Iterator[MapCache]:
    c = MapCache(msettings)
    yield c
    c.close()
