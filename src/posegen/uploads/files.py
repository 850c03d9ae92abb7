"""Where an upload's bytes live: ``<uploads>/<user_id>/<sha256[:2]>/<sha256>.<ext>``.

Every part of the name comes from the row (owner id, content hash, checked content type), never
from a client. A file per owner rather than one per content: two users' uploads never share a
file, so one user deleting theirs cannot race another's upload of the same bytes, and nothing on
disk links their accounts.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from posegen.config import Settings
from posegen.controlnet.localfiles import read_upload
from posegen.uploads.images import EXTENSIONS


def relpath(user_id: int, sha256: str, content_type: str) -> str:
    """The file's path below the uploads root."""
    return f"{int(user_id)}/{sha256[:2]}/{sha256}.{EXTENSIONS[content_type]}"


def stage(settings: Settings, rel: str, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``rel``'s place, flushed to disk: the slow part,
    done before any lock is taken. :func:`publish` or :func:`discard` it afterwards."""
    target = settings.effective_uploads_dir / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        discard(Path(tmp))
        raise
    return Path(tmp)


def publish(staged: Path, settings: Settings, rel: str) -> bool:
    """Move a staged file to ``rel`` atomically; False (and the staged file dropped) if a file
    was already there: content-addressed, so same name means same bytes."""
    target = settings.effective_uploads_dir / rel
    if target.is_file():
        discard(staged)
        return False
    os.replace(staged, target)
    return True


def discard(staged: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        staged.unlink()


def unlink(settings: Settings, rel: str) -> None:
    path: Path = settings.effective_uploads_dir / rel
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def read(settings: Settings, rel: str) -> bytes:
    """The file's bytes through the confined reader (no escapes, no symlinks, byte cap)."""
    cap = max(settings.upload_max_bytes, settings.fetch_max_bytes)
    data, _st = read_upload(settings.effective_uploads_dir, rel, cap)
    return data
