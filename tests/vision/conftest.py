"""Vision fixtures: settings whose helper is the vision environment (skipped, with the reason
shown, only where `make install-vision` has not been run) and the test photo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from vision_helpers import NOT_INSTALLED, photo_path, vision_python

from posegen.config import Settings, load_settings


@pytest.fixture
def vision_settings(tmp_path: Path) -> Iterator[Settings]:
    python = vision_python()
    if python is None:
        pytest.skip(NOT_INSTALLED)
    yield load_settings(data_dir=tmp_path, vision_python=python)


@pytest.fixture(scope="session")
def photo() -> bytes:
    path = photo_path()
    if path is None:
        pytest.skip(f"{NOT_INSTALLED}: grace_hopper.jpg comes with its matplotlib")
    return path.read_bytes()
