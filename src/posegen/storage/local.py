"""Results on the local (or a shared, mounted) filesystem under ``settings.effective_results_dir``.

Files are published atomically: written to a temporary name in the same folder, fsynced, renamed
over the final name, and the folder fsynced, so a reader (or a worker resuming after SIGKILL)
sees either the old complete file or the new complete one.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from posegen.config import Settings
from posegen.exceptions import InvalidInput, NotFound
from posegen.storage.base import (
    MEDIA_TYPES,
    THUMBNAIL_BOUNDS,
    StoredFile,
    StoredResult,
    check_rel_path,
    export_name,
    generation_folder,
    result_names,
)


class LocalStorage:
    """The filesystem result store (the one posegen ships)."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.effective_results_dir.expanduser().resolve()

    def save_result(
        self,
        generation_id: int,
        variation_key: str,
        png: bytes,
        image: Image.Image | None = None,
    ) -> StoredResult:
        """Write the PNG and its thumbnail; returns their paths relative to the results dir."""
        image_rel, thumb_rel = result_names(generation_id, variation_key)
        thumb = make_thumbnail(png if image is None else image)
        folder = (self.root / image_rel).parent
        folder.mkdir(parents=True, exist_ok=True)
        _publish(self.root / image_rel, png)
        _publish(self.root / thumb_rel, thumb)
        _fsync_dir(folder)
        return StoredResult(image_rel, thumb_rel, len(png) + len(thumb))

    def save_export(
        self, generation_id: int, variation_key: str, fmt: str, ext: str, data: bytes
    ) -> str:
        rel = export_name(generation_id, variation_key, fmt, ext)
        folder = (self.root / rel).parent
        folder.mkdir(parents=True, exist_ok=True)
        _publish(self.root / rel, data)
        _fsync_dir(folder)
        return rel

    def open(self, rel_path: str) -> Path:
        """The absolute path of a stored file; only names this store makes, only under its root."""
        path = (self.root / check_rel_path(rel_path)).resolve()
        if not path.is_relative_to(self.root):
            raise InvalidInput("not a stored result path", kind="bad-path")
        if not path.is_file():
            raise NotFound("no such result file")
        return path

    def read(self, rel_path: str) -> bytes:
        """The bytes of a stored file."""
        return self.open(rel_path).read_bytes()

    def open_stream(self, rel_path: str) -> StoredFile:
        path = self.open(rel_path)
        fh = path.open("rb")  # opened now, so a missing file fails here and not mid-response
        stat = os.fstat(fh.fileno())
        media = MEDIA_TYPES.get(path.suffix, "application/octet-stream")
        modified = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC)
        return StoredFile(stat.st_size, modified, media, _blocks(fh))

    def check(self) -> None:
        """Nothing to check: the folder is made on the first write."""

    def delete_generation(self, generation_id: int) -> int:
        """Remove a generation's folder; returns the number of files removed."""
        folder = self.root / generation_folder(generation_id)
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.iterdir() if p.is_file())
        shutil.rmtree(folder)
        return count


#: The default store under its interface name: ``Storage(settings)`` is the local store.
Storage = LocalStorage


def make_thumbnail(source: bytes | Image.Image) -> bytes:
    """A JPEG no larger than 400x400, aspect ratio kept."""
    if isinstance(source, bytes):
        with Image.open(io.BytesIO(source), formats=["PNG"]) as decoded:
            img = decoded.convert("RGB")
    else:
        img = source if source.mode == "RGB" else source.convert("RGB")
    bound_w, bound_h = THUMBNAIL_BOUNDS
    scale = min(bound_w / img.width, bound_h / img.height)
    if scale < 1:
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        # Area averaging: as sharp as bilinear for a downscale, and a third cheaper.
        img = img.resize(size, Image.Resampling.BOX)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _blocks(fh: io.BufferedReader) -> Iterator[bytes]:
    with fh:
        while block := fh.read(256 * 1024):
            yield block


def _publish(target: Path, data: bytes) -> None:
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
