"""Single-flight across real processes, and crash safety of cache writes (SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from maps_origin import Origin, image_bytes

from posegen.config import Settings
from posegen.controlnet import MapCache, MapSource

CHILD = Path(__file__).with_name("maps_child.py")


def _spawn(mode: str, settings: Settings, go: Path, url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), mode, str(settings.data_dir), str(go), url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_together(n: int, settings: Settings, tmp_path: Path, url: str) -> list[dict[str, str]]:
    go = tmp_path / "go"
    children = [_spawn("load", settings, go, url) for _ in range(n)]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready", child.stderr
        go.touch()  # release them all at once
        results = []
        for child in children:
            out, err = child.communicate(timeout=60)
            assert child.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def test_ten_processes_one_origin_fetch(
    origin: Origin, msettings: Settings, tmp_path: Path
) -> None:
    url = origin.add("/stampede.png", image_bytes(size=(320, 256)), delay=1.0)
    results = _run_together(10, msettings, tmp_path, url)
    assert origin.count("/stampede.png") == 1
    outcomes = [r["outcome"] for r in results]
    assert outcomes.count("miss") == 1, outcomes
    assert set(outcomes) <= {"miss", "coalesced", "disk"}
    assert len({r["sha256"] for r in results}) == 1
    totals = MapCache(msettings).host_stats()
    assert totals["origin_fetches"] == 1 and totals["misses"] == 1


def test_leader_failure_reaches_waiting_processes(
    origin: Origin, msettings: Settings, tmp_path: Path
) -> None:
    # Failure TTL is 0 in these settings: waiters still get the error of the flight they
    # waited on instead of fetching again.
    url = origin.add("/down.png", b"unavailable", status=503, delay=3.0)
    results = _run_together(6, msettings, tmp_path, url)
    assert [r["outcome"] for r in results] == ["error"] * 6
    assert {r["kind"] for r in results} == {"http-status"}
    assert origin.count("/down.png") == 1
    assert MapCache(msettings).usage().entries == 0


def test_sigkill_during_a_cache_write_leaves_no_partial_entry(
    origin: Origin, msettings: Settings, tmp_path: Path
) -> None:
    url = origin.add("/kill.png", image_bytes(size=(512, 512)))
    go = tmp_path / "go"
    go.touch()
    child = _spawn("stall-write", msettings, go, url)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        assert child.stdout.readline().strip() == "writing"  # temp file written, not published
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None and child.returncode is None:
            child.kill()
        child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL
    cache = MapCache(msettings)
    key = MapSource.from_url(url).url_key()
    usage = cache.usage()
    assert usage.entries == 0 and usage.temp_files == 1
    assert cache.disk.get(key) is None
    # The dead writer's lock was released by the kernel: the next load fetches at once.
    started = time.monotonic()
    result = cache.load(url)
    assert result is not None and result.outcome == "miss"
    assert time.monotonic() - started < msettings.fetch_timeout_seconds
    assert origin.count("/kill.png") == 2
    # Stale temp files are swept once old.
    for tmp in cache.disk.entries.rglob(".tmp-*"):
        os.utime(tmp, (time.time() - 3600, time.time() - 3600))
    cache.disk.evict()
    assert cache.usage().temp_files == 0 and cache.usage().entries == 1
    cache.close()
