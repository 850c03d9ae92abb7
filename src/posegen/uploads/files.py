"""Where an upload's bytes live: ``<uploads>/<user_id>/<sha256[:2]>/<sha256>.<ext>`` (or that
name under ``<prefix>/uploads/`` in the bucket with ``POSEGEN_STORAGE=s3``).

Every part of the name comes from the row (owner id, content hash, checked content type), never
from a client. A file per owner rather than one per content: two users' uploads never share a
file, so one user deleting theirs cannot race another's upload of the same bytes, and nothing on
disk links their accounts.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from posegen.config import Settings
from posegen.controlnet.localfiles import read_upload
from posegen.uploads.images import EXTENSIONS

if TYPE_CHECKING:
    from posegen.storage.s3 import S3Uploads


def relpath(user_id: int, sha256: str, content_type: str) -> str:
    """The file's path below the uploads root."""
    return f"{int(user_id)}/{sha256[:2]}/{sha256}.{EXTENSIONS[content_type]}"


@dataclass(frozen=True)
class Staged:
    """Bytes ready to publish: a flushed temporary file (local), or the bytes (object store)."""

    path: Path | None
    data: bytes


def stage(settings: Settings, rel: str, data: bytes) -> Staged:
    """Write ``data`` to a temporary file beside ``rel``'s place, flushed to disk: the slow part,
    done before any lock is taken. :func:`publish` or :func:`discard` it afterwards. With the
    object store there is nothing to stage: the PUT is the publish (before the row, so a crash
    leaves an orphan object, never a row without bytes)."""
    if settings.storage == "s3":
        return Staged(None, data)
    target = settings.effective_uploads_dir / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        _drop(Path(tmp))
        raise
    return Staged(Path(tmp), data)


def publish(staged: Staged, settings: Settings, rel: str) -> bool:
    """Move a staged file to ``rel`` atomically; False (and the staged file dropped) if a file
    was already there: content-addressed, so same name means same bytes."""
    if staged.path is None:
        store = _s3(settings)
        if store.exists(rel):
            return False
        store.put(rel, staged.data)
        return True
    target = settings.effective_uploads_dir / rel
    if target.is_file():
        discard(staged)
        return False
    os.replace(staged.path, target)
    return True


def discard(staged: Staged) -> None:
    if staged.path is not None:
        _drop(staged.path)


def _drop(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def unlink(settings: Settings, rel: str) -> None:
    if settings.storage == "s3":
        _s3(settings).delete(rel)
        return
    path: Path = settings.effective_uploads_dir / rel
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def read(settings: Settings, rel: str) -> bytes:
    """The file's bytes through the confined reader (no escapes, no symlinks, byte cap)."""
    cap = max(settings.upload_max_bytes, settings.fetch_max_bytes)
    if settings.storage == "s3":
        return _s3(settings).get(rel, cap)
    data, _st = read_upload(settings.effective_uploads_dir, rel, cap)
    return data


def _s3(settings: Settings) -> S3Uploads:
    from posegen.storage.s3 import S3Uploads

    return S3Uploads(settings)
