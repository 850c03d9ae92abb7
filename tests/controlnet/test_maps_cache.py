"""MapCache layers in one process: memory, disk, single-flight, corruption, eviction, failures."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from maps_origin import Origin, image_bytes

from posegen.config import Settings
from posegen.controlnet import MapCache, MapSource
from posegen.exceptions import FetchError


def test_memory_then_disk_then_miss(origin: Origin, msettings: Settings) -> None:
    url = origin.add("/m.png", image_bytes(size=(128, 128)))
    first = MapCache(msettings)
    second = MapCache(msettings)
    try:
        a = first.load(url)
        b = first.load(url)
        c = second.load(url)
    finally:
        first.close()
        second.close()
    assert a is not None and b is not None and c is not None
    assert (a.outcome, b.outcome, c.outcome) == ("miss", "memory", "disk")
    assert a.png == b.png == c.png and a.sha256 == c.sha256
    assert origin.count("/m.png") == 1
    stats = first.stats()
    assert stats["misses"] == 1 and stats["memory_hits"] == 1 and stats["origin_fetches"] == 1
    assert stats["bytes_fetched"] == len(image_bytes(size=(128, 128)))
    assert second.stats()["disk_hits"] == 1


def test_placeholder_means_no_map(origin: Origin, cache: MapCache) -> None:
    assert cache.load("https://cdn.example.com/placeholder-pose.png") is None
    assert cache.load(MapSource.from_url("/uploads/placeholder.png")) is None


def test_threads_share_one_fetch(origin: Origin, cache: MapCache) -> None:
    url = origin.add("/slow.png", image_bytes(), delay=0.5)
    start = threading.Barrier(12)

    def load(_: int) -> str:
        start.wait()
        result = cache.load(url)
        assert result is not None
        return result.outcome

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(load, range(12)))
    assert origin.count("/slow.png") == 1
    assert outcomes.count("miss") == 1
    assert outcomes.count("coalesced") == 11
    assert cache.stats()["coalesced"] == 11
    assert cache._flights.in_flight() == 0  # the registry empties when flights end


def test_leader_failure_reaches_every_waiter(origin: Origin, cache: MapCache) -> None:
    url = origin.add("/fails.png", b"broken", status=503, delay=0.5)
    start = threading.Barrier(8)

    def load(_: int) -> str:
        start.wait()
        try:
            cache.load(url)
        except FetchError as exc:
            return exc.kind
        return "ok"

    with ThreadPoolExecutor(8) as pool:
        kinds = list(pool.map(load, range(8)))
    assert kinds == ["http-status"] * 8
    assert origin.count("/fails.png") == 1
    assert cache.stats()["errors_http-status"] == 8
    assert cache.usage().entries == 0


def test_failures_are_remembered_for_the_ttl(origin: Origin, make_settings: Any) -> None:
    url = origin.add("/flaky.png", b"down", status=500)
    cache = MapCache(make_settings(map_failure_ttl_seconds=60))
    other = MapCache(make_settings(map_failure_ttl_seconds=60))
    try:
        for _ in range(3):
            with pytest.raises(FetchError) as err:
                cache.load(url)
            assert err.value.kind == "http-status"
        with pytest.raises(FetchError) as err:
            other.load(url)  # another process sees the marker too
        assert err.value.kind == "http-status"
        assert origin.count("/flaky.png") == 1  # not hammered
        assert cache.usage().entries == 0 and cache.usage().error_markers == 1
        origin.add("/flaky.png", image_bytes())
        cache.clear()  # an operator can forget failures at once
        result = other.load(url)
    finally:
        cache.close()
        other.close()
    assert result is not None and result.outcome == "miss"
    assert origin.count("/flaky.png") == 2


def test_without_ttl_a_fixed_origin_is_retried(origin: Origin, cache: MapCache) -> None:
    url = origin.add("/later.png", b"down", status=502)
    with pytest.raises(FetchError):
        cache.load(url)
    origin.add("/later.png", image_bytes())
    result = cache.load(url)
    assert result is not None and result.outcome == "miss"
    assert origin.count("/later.png") == 2
    assert cache.usage().error_markers == 0


def test_corrupt_entry_is_detected_and_refetched(origin: Origin, msettings: Settings) -> None:
    url = origin.add("/c.png", image_bytes(size=(128, 128)))
    first = MapCache(msettings)
    good = first.load(url)
    first.close()
    assert good is not None
    entry = first.disk.entry_path(MapSource.from_url(url).url_key())
    blob = bytearray(entry.read_bytes())
    blob[-20] ^= 0xFF
    entry.write_bytes(bytes(blob))
    second = MapCache(msettings)
    try:
        again = second.load(url)
    finally:
        second.close()
    assert again is not None and again.outcome == "miss" and again.png == good.png
    assert origin.count("/c.png") == 2
    assert second.disk.get(MapSource.from_url(url).url_key()) == good.png


def test_truncated_entry_is_refetched(origin: Origin, msettings: Settings) -> None:
    url = origin.add("/t.png", image_bytes())
    first = MapCache(msettings)
    first.load(url)
    first.close()
    entry = first.disk.entry_path(MapSource.from_url(url).url_key())
    entry.write_bytes(entry.read_bytes()[:30])
    cache = MapCache(msettings)
    try:
        result = cache.load(url)
    finally:
        cache.close()
    assert result is not None and result.outcome == "miss"


def test_eviction_keeps_the_budget_and_drops_least_recently_used(
    origin: Origin, make_settings: Any
) -> None:
    bodies = {f"/e{i}.png": image_bytes(size=(256, 256), colour=(i, 2 * i, 3)) for i in range(6)}
    urls = [origin.add(path, body) for path, body in bodies.items()]
    probe = MapCache(make_settings(map_cache_memory_items=0))
    for url in urls:
        probe.load(url)
    largest = max(p.stat().st_size for p in probe.disk.entries.rglob("*.map"))
    probe.clear()
    probe.close()
    budget = largest * 3 + largest // 2  # room for three entries
    cache = MapCache(make_settings(map_cache_max_bytes=budget, map_cache_memory_items=0))

    def present() -> set[int]:
        return {
            i
            for i, url in enumerate(urls)
            if cache.disk.entry_path(MapSource.from_url(url).url_key()).exists()
        }

    try:
        for url in urls[:3]:
            cache.load(url)
        assert cache.load(urls[0]).outcome == "disk"  # type: ignore[union-attr]
        cache.load(urls[3])
        assert present() == {0, 2, 3}  # 1 was least recently used, not 0 (oldest written)
        cache.load(urls[4])
        assert present() == {0, 3, 4}
        cache.load(urls[5])
        assert present() == {3, 4, 5}
        assert cache.usage().bytes <= budget
    finally:
        cache.close()


def test_entry_larger_than_the_budget_is_served_but_not_stored(
    origin: Origin, make_settings: Any
) -> None:
    url = origin.add("/huge.png", image_bytes(size=(256, 256)))
    cache = MapCache(make_settings(map_cache_max_bytes=100))
    try:
        assert cache.load(url) is not None
        assert cache.usage().entries == 0
    finally:
        cache.close()


def test_keypoint_maps_are_rendered_cached_and_keyed_by_size(msettings: Settings) -> None:
    person = [[0.5, 0.1], [0.5, 0.2], [0.4, 0.2], *([None] * 15)]
    cache = MapCache(msettings)
    try:
        a = cache.load(MapSource.from_keypoints(person))
        b = cache.load(MapSource.from_keypoints(person), (512, 512))
        c = cache.load(MapSource.from_keypoints(person), (256, 320))
    finally:
        cache.close()
    assert a is not None and b is not None and c is not None
    assert a.size == (msettings.default_width, msettings.default_height) == (512, 512)
    assert (a.outcome, b.outcome, c.outcome) == ("miss", "memory", "miss")
    assert c.size == (256, 320) and c.sha256 != a.sha256
    assert cache.stats()["origin_fetches"] == 0
    fresh = MapCache(msettings)
    again = fresh.load(MapSource.from_keypoints(person), (256, 320))
    fresh.close()
    assert again is not None and again.outcome == "disk" and again.png == c.png


def test_counters_accumulate_per_host(origin: Origin, msettings: Settings) -> None:
    url = origin.add("/s.png", image_bytes())
    for _ in range(2):
        cache = MapCache(msettings)
        cache.load(url)
        cache.load(url)
        cache.close()
    totals = MapCache(msettings).host_stats()
    assert totals["misses"] == 1 and totals["disk_hits"] == 1 and totals["memory_hits"] == 2
    assert totals["origin_fetches"] == 1


def test_clear_removes_entries_and_markers_but_keeps_lock_files(
    origin: Origin, cache: MapCache
) -> None:
    url = origin.add("/k.png", image_bytes())
    cache.load(url)
    with pytest.raises(FetchError):
        cache.load(origin.url("/missing.png"))
    locks_before = sorted(Path(cache.locks.folder).iterdir())
    usage = cache.usage()
    assert usage.entries == 1 and usage.error_markers == 1
    assert cache.clear() == (1, usage.bytes)
    assert cache.usage().entries == 0 and cache.usage().error_markers == 0
    assert sorted(Path(cache.locks.folder).iterdir()) == locks_before != []
    result = cache.load(url)
    assert result is not None and result.outcome == "miss"
