"""Settings for map tests and their child processes (no database involved)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from posegen.config import Settings, load_settings


def map_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": f"sqlite:///{data_dir / 'unused.db'}",
        "fetch_allowlist": "127.0.0.1",
        "fetch_timeout_seconds": 3.0,
        "map_failure_ttl_seconds": 0.0,
    }
    values.update(overrides)
    return load_settings(**values)
