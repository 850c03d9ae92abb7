"""Map cache counters: per process in memory (exported by the metrics part), and accumulated
per host in a small file so ``posegen maps stats`` can show them."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from pathlib import Path

ERROR_KINDS = (
    "blocked-address",
    "bad-scheme",
    "bad-path",
    "too-large",
    "timeout",
    "http-status",
    "not-an-image",
    "bad-format",
    "too-many-pixels",
    "decompression-bomb",
    "truncated",
    "too-many-redirects",
    "connect",
)
COUNTERS = (
    "memory_hits",
    "disk_hits",
    "misses",
    "origin_fetches",
    "coalesced",
    "bytes_fetched",
    *(f"errors_{kind}" for kind in ERROR_KINDS),
)


class Counters:
    """Thread-safe counters with a fixed set of names (stable series for exporters)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals = dict.fromkeys(COUNTERS, 0)
        self._unflushed = dict.fromkeys(COUNTERS, 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._totals[name] = self._totals.get(name, 0) + amount
            self._unflushed[name] = self._unflushed.get(name, 0) + amount

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._totals)

    def take_unflushed(self) -> dict[str, int]:
        with self._lock:
            delta = {k: v for k, v in self._unflushed.items() if v}
            self._unflushed = dict.fromkeys(COUNTERS, 0)
            return delta


def merge_into(path: Path, delta: dict[str, int]) -> None:
    """Add ``delta`` to the host-wide totals in ``path`` (under an exclusive lock)."""
    if not delta:
        return
    lock = path.with_suffix(".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        totals = read_totals(path)
        for name, amount in delta.items():
            totals[name] = totals.get(name, 0) + amount
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(totals, sort_keys=True))
        os.replace(tmp, path)
    finally:
        os.close(fd)


def read_totals(path: Path) -> dict[str, int]:
    """Host-wide totals (every counter present, zero when never counted)."""
    totals = dict.fromkeys(COUNTERS, 0)
    with contextlib.suppress(FileNotFoundError, ValueError):
        raw = json.loads(path.read_text())
        if isinstance(raw, dict):
            totals.update({str(k): int(v) for k, v in raw.items() if isinstance(v, int)})
    return totals


def reset(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
