"""Result storage: generated images and thumbnails, named by ids only."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from posegen.config import Settings
from posegen.exceptions import StorageUnavailable
from posegen.storage.base import (
    THUMBNAIL_BOUNDS,
    ResultStore,
    StoredFile,
    StoredResult,
    check_rel_path,
    result_names,
)
from posegen.storage.local import LocalStorage, Storage, make_thumbnail

if TYPE_CHECKING:
    # Imported when chosen: boto3 is an optional extra, and costs ~0.2 s to import.
    from posegen.storage.s3 import S3Storage

__all__ = [
    "THUMBNAIL_BOUNDS",
    "LocalStorage",
    "ResultStore",
    "Storage",
    "StoredFile",
    "StoredResult",
    "check_rel_path",
    "delete_generation_files",
    "delete_results",
    "make_storage",
    "make_thumbnail",
    "result_names",
]


def make_storage(settings: Settings) -> LocalStorage | S3Storage:
    """The store for these settings: ``POSEGEN_STORAGE=local`` (default) or ``s3``."""
    if settings.storage == "s3":
        from posegen.storage.s3 import S3Storage

        return S3Storage(settings)
    return LocalStorage(settings)


log = logging.getLogger(__name__)


def delete_results(settings: Settings, generation_ids: Iterable[int]) -> None:
    """Delete the stored files of generations whose rows are gone (project or generation
    deleted)."""
    store = make_storage(settings)
    for generation_id in generation_ids:
        delete_generation_files(store, generation_id)


def delete_generation_files(store: ResultStore, generation_id: int) -> None:
    """Delete one generation's stored files (its row is gone). A store that fails here leaves
    orphan files for the sweep, never a row without its files."""
    try:
        store.delete_generation(generation_id)
    except (OSError, StorageUnavailable) as exc:
        log.warning(
            "result files not deleted",
            extra={"generation_id": generation_id, "error": str(exc)},
        )
