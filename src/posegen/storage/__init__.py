"""Result storage: generated images and thumbnails, named by ids only."""

from __future__ import annotations

from posegen.config import Settings
from posegen.storage.base import (
    THUMBNAIL_BOUNDS,
    ResultStore,
    StoredResult,
    check_rel_path,
    result_names,
)
from posegen.storage.local import LocalStorage, Storage, make_thumbnail

__all__ = [
    "THUMBNAIL_BOUNDS",
    "LocalStorage",
    "ResultStore",
    "Storage",
    "StoredResult",
    "check_rel_path",
    "make_storage",
    "make_thumbnail",
    "result_names",
]


def make_storage(settings: Settings) -> LocalStorage:
    """The store for these settings (the local filesystem; S3-compatible stores plug in here)."""
    return LocalStorage(settings)
