"""The result-store interface, and the id-only naming every store uses.

A store keeps each generated image and its thumbnail under a name derived from the generation id
and the variation key only (both made by posegen, never typed by a user), so no request can pick
where a file lands. The local filesystem store is the default; the S3-compatible store
(``POSEGEN_STORAGE=s3``) implements the same methods.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import NamedTuple, Protocol, runtime_checkable

from PIL import Image

from posegen.exceptions import InvalidInput

THUMBNAIL_BOUNDS = (400, 400)

_KEY = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
#: Every name a store hands out matches this; anything else is refused before touching storage.
#: Exports: ``<variation key>.x-<format>.<ext>`` beside the image (removed with the generation).
REL_PATH = re.compile(
    r"[0-9]{6}/[1-9][0-9]{0,18}/[a-z0-9][a-z0-9_-]{0,99}"
    r"(\.png|\.thumb\.jpg|\.x-[a-z0-9][a-z0-9_-]{0,63}\.(jpg|png|webp|tif))"
)
_FORMAT = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_EXT = re.compile(r"jpg|png|webp|tif")
#: Media types by file suffix, for every name a store makes.
MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".webp": "image/webp",
    ".tif": "image/tiff",
}


class StoredResult(NamedTuple):
    """Where a result's files went, and how many bytes they take (the owner's quota counts it)."""

    image: str
    thumbnail: str
    bytes: int


class StoredFile(NamedTuple):
    """A stored file opened for streaming: read ``chunks`` once, to the end (it closes itself)."""

    size: int
    modified: dt.datetime
    media_type: str
    chunks: Iterator[bytes]


@runtime_checkable
class ResultStore(Protocol):
    """Where generated images and thumbnails live."""

    def save_result(
        self,
        generation_id: int,
        variation_key: str,
        png: bytes,
        image: Image.Image | None = None,
    ) -> StoredResult:
        """Store the PNG and a thumbnail; returns their relative paths and total size.

        ``image`` is the decoded picture when the caller has it (saves a decode).
        Writing the same key again replaces both files atomically.
        """
        ...

    def read(self, rel_path: str) -> bytes:
        """The bytes of a stored file (NotFound when it is not there)."""
        ...

    def open_stream(self, rel_path: str) -> StoredFile:
        """The file as a stream of blocks, never whole in memory (NotFound when absent)."""
        ...

    def delete_generation(self, generation_id: int) -> int:
        """Remove every file of a generation (exports included); returns how many."""
        ...

    def save_export(
        self, generation_id: int, variation_key: str, fmt: str, ext: str, data: bytes
    ) -> str:
        """Store one export of a result; returns its relative name (:func:`export_name`).
        Writing the same name again replaces the file atomically (a retried task or pose)."""
        ...

    def check(self) -> None:
        """Raise StorageUnavailable (one line) when the store cannot be used; start-up calls it."""
        ...


def result_names(generation_id: int, variation_key: str) -> tuple[str, str]:
    """Relative paths (image, thumbnail) for one variation; refuses anything but ids."""
    folder = generation_folder(generation_id)
    if not isinstance(variation_key, str) or not _KEY.fullmatch(variation_key):
        raise InvalidInput(f"not a variation key: {variation_key!r}", kind="bad-path")
    return f"{folder}/{variation_key}.png", f"{folder}/{variation_key}.thumb.jpg"


def export_name(generation_id: int, variation_key: str, fmt: str, ext: str) -> str:
    """Relative path of one export: beside the result's image, so it lives (and is removed)
    with the generation's files. Only ids, a format name and a known suffix."""
    image, _ = result_names(generation_id, variation_key)
    if not _FORMAT.fullmatch(fmt) or not _EXT.fullmatch(ext):
        raise InvalidInput(f"not an export name: {fmt!r}.{ext!r}", kind="bad-path")
    return check_rel_path(image.removesuffix(".png") + f".x-{fmt}.{ext}")


def generation_folder(generation_id: int) -> str:
    """``000012/12345``: sharded by thousands so no folder grows without bound."""
    if not isinstance(generation_id, int) or isinstance(generation_id, bool) or generation_id < 1:
        raise InvalidInput(f"not a generation id: {generation_id!r}", kind="bad-path")
    return f"{generation_id // 1000:06d}/{generation_id}"


def check_rel_path(rel_path: str) -> str:
    """``rel_path`` if it is a name a store could have made, else InvalidInput(kind=bad-path)."""
    if not isinstance(rel_path, str) or not REL_PATH.fullmatch(rel_path):
        raise InvalidInput("not a stored result path", kind="bad-path")
    return rel_path
