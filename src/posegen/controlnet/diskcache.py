"""The on-disk map cache shared by every process on a host.

An entry is one file ``entries/<k[:2]>/<key>.map``: a magic header, the SHA-256 of the payload,
its length, then the PNG. It is published atomically (temp file in the same folder, fsync,
``os.replace``, fsync of the folder), so a reader sees a whole entry or none, even if the writer
is killed. The file's mtime is its last access; eviction removes the least recently used
entries until the folder fits the budget. Failures are remembered as small marker files.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = b"PGMAP\x01"
_HEADER = struct.Struct(">6s32sQ")
_TMP_PREFIX = ".tmp-"
#: A temp file this old belongs to a writer that died (writes take milliseconds).
STALE_TMP_SECONDS = 600.0


@dataclass(frozen=True)
class ErrorMarker:
    kind: str
    message: str
    created: float
    until: float


@dataclass(frozen=True)
class Usage:
    entries: int
    bytes: int
    error_markers: int
    temp_files: int


class DiskCache:
    """Entries, error markers and lock files under one folder."""

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.entries = root / "entries"
        self.errors = root / "errors"
        self.locks = root / "locks"
        for folder in (self.entries, self.errors, self.locks):
            folder.mkdir(parents=True, exist_ok=True)

    def entry_path(self, key: str) -> Path:
        return self.entries / key[:2] / f"{key}.map"

    # --- entries --------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        """The payload of ``key``, or None when absent or corrupt (a corrupt entry is removed)."""
        path = self.entry_path(key)
        try:
            with open(path, "rb") as fh:
                blob = fh.read()
        except FileNotFoundError:
            return None
        payload = _unpack(blob)
        if payload is None:
            log.warning("corrupt map cache entry removed", extra={"key": key, "path": str(path)})
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return None
        _touch(path)
        return payload

    def put(self, key: str, payload: bytes) -> bool:
        """Publish ``payload`` under ``key`` atomically, then evict down to the budget."""
        blob = _HEADER.pack(MAGIC, hashlib.sha256(payload).digest(), len(payload)) + payload
        if len(blob) > self.max_bytes:
            return False
        folder = self.entry_path(key).parent
        folder.mkdir(exist_ok=True)
        _atomic_write(folder, self.entry_path(key).name, blob)
        _touch(self.entry_path(key))
        self.evict(keep=key)
        return True

    def evict(self, keep: str | None = None) -> int:
        """Remove least-recently-used entries until the total fits ``max_bytes``."""
        with self._exclusive("evict.lock", wait=False) as got:
            if not got:
                return 0  # another process is evicting right now
            files: list[tuple[float, int, Path]] = []
            total = 0
            for path, st in self._scan(self.entries):
                if path.name.startswith(_TMP_PREFIX):
                    if time.time() - st.st_mtime > STALE_TMP_SECONDS:
                        with contextlib.suppress(FileNotFoundError):
                            path.unlink()
                    continue
                files.append((st.st_mtime, st.st_size, path))
                total += st.st_size
            removed = 0
            files.sort()
            for _mtime, size, path in files:
                if total <= self.max_bytes:
                    break
                if keep is not None and path.name == f"{keep}.map":
                    continue
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                total -= size
                removed += 1
            return removed

    def clear(self) -> tuple[int, int]:
        """Remove every entry, error marker and stale temp file; lock files stay."""
        count = size = 0
        for folder in (self.entries, self.errors):
            for path, st in self._scan(folder):
                if path.name.startswith(_TMP_PREFIX) and time.time() - st.st_mtime < 60:
                    continue  # a writer is working on it
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                if folder is self.entries and not path.name.startswith(_TMP_PREFIX):
                    count += 1
                    size += st.st_size
        return count, size

    def usage(self) -> Usage:
        entries = size = temps = 0
        for path, st in self._scan(self.entries):
            if path.name.startswith(_TMP_PREFIX):
                temps += 1
            else:
                entries += 1
                size += st.st_size
        markers = sum(1 for _ in self._scan(self.errors))
        return Usage(entries, size, markers, temps)

    # --- failure markers ------------------------------------------------------------------
    def write_error(self, key: str, kind: str, message: str, ttl: float) -> None:
        now = time.time()
        body = json.dumps({"kind": kind, "message": message, "created": now, "until": now + ttl})
        _atomic_write(self.errors, f"{key}.json", body.encode(), durable=False)

    def read_error(self, key: str) -> ErrorMarker | None:
        try:
            raw = json.loads((self.errors / f"{key}.json").read_bytes())
            return ErrorMarker(
                str(raw["kind"]), str(raw["message"]), float(raw["created"]), float(raw["until"])
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, OSError):
            return None

    def drop_error(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.errors / f"{key}.json").unlink()

    # --- helpers --------------------------------------------------------------------------
    def _scan(self, folder: Path) -> Iterator[tuple[Path, os.stat_result]]:
        for dirpath, _dirs, names in os.walk(folder):
            for name in names:
                path = Path(dirpath) / name
                try:
                    yield path, path.stat()
                except FileNotFoundError:
                    continue

    @contextlib.contextmanager
    def _exclusive(self, name: str, wait: bool) -> Iterator[bool]:
        fd = os.open(self.locks / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)


def _touch(path: Path) -> None:
    """Record the last access as the mtime. Explicit times: the kernel's own are coarse (a few
    ms), too coarse to order entries used in quick succession."""
    now = time.time()
    with contextlib.suppress(OSError):
        os.utime(path, (now, now))


def _unpack(blob: bytes) -> bytes | None:
    if len(blob) < _HEADER.size:
        return None
    magic, digest, length = _HEADER.unpack_from(blob)
    payload = blob[_HEADER.size :]
    if magic != MAGIC or length != len(payload) or hashlib.sha256(payload).digest() != digest:
        return None
    return payload


def _atomic_write(folder: Path, name: str, data: bytes, durable: bool = True) -> None:
    tmp = folder / f"{_TMP_PREFIX}{name}-{os.getpid()}-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    os.close(fd)
    os.replace(tmp, folder / name)
    if durable:
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
