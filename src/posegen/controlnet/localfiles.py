"""Files under the uploads root. A row's path is never simply joined onto the folder: the
resolved real path must stay inside the root (no ``..``, absolute escapes, symlinks out, NUL
bytes or percent-encoded tricks)."""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath

from posegen.controlnet.sources import has_percent_escape, upload_relpath
from posegen.exceptions import FetchError


def resolve_upload(root: Path, reference: str) -> Path:
    """The real path of ``reference`` (``/uploads/x.png`` or ``x.png``) inside ``root``."""
    if "\x00" in reference:
        raise FetchError("NUL byte in path", kind="bad-path")
    if "\\" in reference:
        raise FetchError(f"backslash in path {reference!r}", kind="bad-path")
    if has_percent_escape(reference):
        raise FetchError(f"percent-encoded path {reference!r} is not accepted", kind="bad-path")
    rel = upload_relpath(reference)
    pure = PurePosixPath(rel)
    if pure.is_absolute():
        raise FetchError(f"absolute path {reference!r} is outside /uploads/", kind="bad-path")
    if any(part == ".." for part in pure.parts) or not pure.parts:
        raise FetchError(f"path {reference!r} leaves the uploads folder", kind="bad-path")
    try:
        real_root = root.resolve(strict=True)
        real = (real_root / pure).resolve(strict=True)
    except FileNotFoundError as exc:
        raise FetchError(f"no such upload: {reference!r}", kind="bad-path") from exc
    except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop
        raise FetchError(f"cannot resolve upload {reference!r}: {exc}", kind="bad-path") from exc
    if not real.is_relative_to(real_root):
        raise FetchError(f"path {reference!r} resolves outside the uploads folder", kind="bad-path")
    return real


def read_upload(root: Path, reference: str, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """Read a regular file inside ``root`` with a byte cap; returns its bytes and its stat."""
    real = resolve_upload(root, reference)
    try:
        # O_NOFOLLOW: a symlink swapped in after resolving is refused, not followed.
        # O_NONBLOCK: a FIFO planted in the folder cannot hang the worker.
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise FetchError(
            f"cannot open upload {reference!r}: {exc.strerror}", kind="bad-path"
        ) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FetchError(f"upload {reference!r} is not a regular file", kind="bad-path")
        if st.st_size > max_bytes:
            raise FetchError(
                f"upload {reference!r} is {st.st_size} bytes, over the {max_bytes} cap",
                kind="too-large",
            )
        chunks: list[bytes] = []
        remaining = max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1024 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise FetchError(f"cannot read upload {reference!r}: {exc}", kind="bad-path") from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise FetchError(f"upload {reference!r} is over the {max_bytes}-byte cap", kind="too-large")
    return data, st


def upload_stat(root: Path, reference: str) -> os.stat_result:
    """Stat of the confined upload (used to key cache entries by content version)."""
    real = resolve_upload(root, reference)
    try:
        return os.stat(real, follow_symlinks=False)
    except OSError as exc:
        raise FetchError(
            f"cannot stat upload {reference!r}: {exc.strerror}", kind="bad-path"
        ) from exc
