"""``MapCache``: memory LRU -> disk cache -> (single-flight) safe fetch, validate, publish.

One instance per process, shared by its threads. A cold key is filled once per host: threads
of a process wait on the in-process flight, other processes wait on the host lock and then
find the published entry (or the leader's error marker).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from posegen.config import Settings
from posegen.controlnet import stats as stats_file
from posegen.controlnet.diskcache import DiskCache, Usage
from posegen.controlnet.fetch import Fetcher, FetchPolicy
from posegen.controlnet.images import read_upload_bytes
from posegen.controlnet.localfiles import upload_stat
from posegen.controlnet.memory import MemoryLRU
from posegen.controlnet.render import render_pose
from posegen.controlnet.singleflight import Flights, HostLocks
from posegen.controlnet.sources import MapSource, sha256_text
from posegen.controlnet.stats import Counters
from posegen.controlnet.validate import normalise, png_size, resize_png, snap_size, to_png
from posegen.exceptions import FetchError

log = logging.getLogger(__name__)

Outcome = Literal["memory", "disk", "miss", "coalesced"]
Size = tuple[int, int]
#: How often host-wide counters are written from the hot path (they are also written at exit).
FLUSH_EVERY_SECONDS = 5.0
#: Time allowed beyond the fetch deadline for decoding and publishing.
_MARGIN_SECONDS = 15.0


@dataclass(frozen=True)
class MapResult:
    """A normalised RGB PNG and how it was obtained."""

    png: bytes
    sha256: str
    outcome: Outcome
    size: Size


class MapCache:
    """Thread-safe map loader with memory, disk and single-flight layers."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.effective_cache_dir / "maps"
        self.disk = DiskCache(self.root, settings.map_cache_max_bytes)
        self.locks = HostLocks(self.disk.locks / "keys")
        self.memory: MemoryLRU[MapResult] = MemoryLRU(settings.map_cache_memory_items)
        self.counters = Counters()
        self._flights: Flights[MapResult] = Flights()
        self._policy = FetchPolicy.from_settings(settings)
        # A one-item box, so the finalizer can close the client without referencing self.
        self._fetcher: list[Fetcher] = []
        self._fetcher_lock = threading.Lock()
        self.stats_path = self.root / "stats.json"
        self._last_flush = time.monotonic()
        self._lock_wait = settings.fetch_timeout_seconds + _MARGIN_SECONDS
        weakref.finalize(self, _finish, self.counters, self.stats_path, self._fetcher)

    # --- public ---------------------------------------------------------------------------
    def load(self, source: MapSource | str, size: Size | None = None) -> MapResult | None:
        """The map of ``source`` (a MapSource, or a URL/path for ``MapSource.from_url``) as a
        normalised RGB PNG (``size`` snapped to multiples of 64; None keeps the source's own
        size, or the default size for keypoints). None when it names no map (a placeholder)."""
        try:
            if isinstance(source, str):
                source = MapSource.from_url(source)
            if source.kind == "none":
                return None
            return self._load(source, size)
        except FetchError as exc:
            self.counters.add(f"errors_{exc.kind}")
            raise
        finally:
            if time.monotonic() - self._last_flush > FLUSH_EVERY_SECONDS:
                self.flush_stats()

    def stats(self) -> dict[str, int]:
        """This process's counters (memory_hits, disk_hits, misses, origin_fetches, coalesced,
        bytes_fetched, errors_<kind>)."""
        return self.counters.snapshot()

    def host_stats(self) -> dict[str, int]:
        """Counters of every process on this host that used this cache folder."""
        self.flush_stats()
        return stats_file.read_totals(self.stats_path)

    def usage(self) -> Usage:
        return self.disk.usage()

    def flush_stats(self) -> None:
        self._last_flush = time.monotonic()
        _flush(self.counters, self.stats_path)

    def clear(self) -> tuple[int, int]:
        """Drop every cached map (memory and disk) and remembered failure."""
        self.memory.clear()
        return self.disk.clear()

    def close(self) -> None:
        """Write the counters and close the HTTP client (also done when garbage collected)."""
        self._last_flush = time.monotonic()
        with self._fetcher_lock:
            # The finalizer stays registered; run again later it finds nothing left to do.
            _finish(self.counters, self.stats_path, self._fetcher)

    # --- layers ---------------------------------------------------------------------------
    def _load(self, source: MapSource, size: Size | None) -> MapResult:
        target = snap_size(size) if size else None
        if source.kind == "keypoints":
            target = target or snap_size(
                (self.settings.default_width, self.settings.default_height)
            )
            key = source.keypoints_key(*target)
        elif source.kind == "url":
            key = source.url_key()
        else:
            key = self._upload_key(source.value)
        memory_key = (key, target)
        hit = self.memory.get(memory_key)
        if hit is not None:
            self.counters.add("memory_hits")
            return MapResult(hit.png, hit.sha256, "memory", hit.size)
        result, waited = self._flights.run(
            memory_key,
            lambda: self._fill(source, key, target),
            self._lock_wait + self.settings.fetch_timeout_seconds + _MARGIN_SECONDS,
        )
        if waited:
            self.counters.add("coalesced")
            return MapResult(result.png, result.sha256, "coalesced", result.size)
        return result

    def _upload_key(self, value: str) -> str:
        if self.settings.storage == "s3":
            # Objects are named by their SHA-256: a name never stands for other bytes.
            return sha256_text(f"s3-upload:{value}")
        st = upload_stat(self.settings.effective_uploads_dir, value)
        # Keyed by inode version too: a replaced upload is a different map.
        return sha256_text(f"upload:{value}|{st.st_ino}|{st.st_mtime_ns}|{st.st_size}")

    def _fill(self, source: MapSource, key: str, target: Size | None) -> MapResult:
        base, outcome = self._base(source, key, target)
        png = base if target is None else resize_png(base, target)
        result = MapResult(png, hashlib.sha256(png).hexdigest(), outcome, png_size(png))
        self.memory.put((key, target), result)
        return result

    def _base(self, source: MapSource, key: str, target: Size | None) -> tuple[bytes, Outcome]:
        payload = self.disk.get(key)
        if payload is not None:
            self.counters.add("disk_hits")
            return payload, "disk"
        self._raise_remembered(key, since=None)
        started = time.time()
        with self.locks.hold(key, self._lock_wait) as waited:
            # Re-check: the process that held the lock may have published it meanwhile.
            payload = self.disk.get(key)
            if payload is not None:
                self.counters.add("coalesced" if waited else "disk_hits")
                return payload, "coalesced" if waited else "disk"
            # A failure recorded after we started waiting is the flight we waited on.
            self._raise_remembered(key, since=started if waited else None)
            self.counters.add("misses")
            try:
                payload = self._produce(source, target)
            except FetchError as exc:
                self._remember(key, exc)
                raise
            self.disk.drop_error(key)
            try:
                self.disk.put(key, payload)
            except OSError as exc:
                # Serving the map matters more than caching it (disk full, read-only folder).
                log.warning("map cache write failed", extra={"key": key, "error": str(exc)})
            return payload, "miss"

    def _produce(self, source: MapSource, target: Size | None) -> bytes:
        max_pixels = self.settings.image_max_pixels
        if source.kind == "keypoints":
            assert target is not None and source.pose is not None
            return to_png(render_pose(source.pose, *target))
        if source.kind == "upload":
            data = read_upload_bytes(self.settings, source.value, self.settings.fetch_max_bytes)
            return normalise(data, max_pixels)
        self.counters.add("origin_fetches")
        fetched = self._client().fetch(source.value)
        self.counters.add("bytes_fetched", len(fetched.data))
        return normalise(fetched.data, max_pixels)

    def _raise_remembered(self, key: str, since: float | None) -> None:
        marker = self.disk.read_error(key)
        if marker is None:
            return
        if marker.until > time.time() or (since is not None and marker.created >= since):
            raise FetchError(marker.message, kind=marker.kind)

    def _remember(self, key: str, exc: FetchError) -> None:
        try:
            self.disk.write_error(key, exc.kind, exc.message, self.settings.map_failure_ttl_seconds)
        except OSError as err:
            log.warning("cannot record map failure", extra={"key": key, "error": str(err)})

    def _client(self) -> Fetcher:
        with self._fetcher_lock:
            if not self._fetcher:
                self._fetcher.append(Fetcher(self._policy))
            return self._fetcher[0]


def _finish(counters: Counters, path: Path, fetcher: list[Fetcher]) -> None:
    _flush(counters, path)
    while fetcher:
        fetcher.pop().close()


def _flush(counters: Counters, path: Path) -> None:
    try:
        stats_file.merge_into(path, counters.take_unflushed())
    except OSError as exc:
        log.warning("cannot write map cache counters", extra={"error": str(exc)})
