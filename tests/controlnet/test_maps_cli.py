"""The real ``posegen maps`` and ``posegen library`` commands, run as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from maps_origin import Origin, image_bytes
from PIL import Image
from sqlalchemy import Engine, func, select

from posegen.config import Settings
from posegen.db.models import PoseLibrary
from posegen.library import builtin_library


def _posegen(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "posegen", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def maps_env(msettings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSEGEN_")}
    env["POSEGEN_DATA_DIR"] = str(msettings.data_dir)
    env["POSEGEN_DATABASE_URL"] = msettings.effective_database_url
    env["POSEGEN_FETCH_ALLOWLIST"] = "127.0.0.1"
    return env


def test_fetch_reports_every_load_and_stats_and_clear(
    origin: Origin, maps_env: dict[str, str]
) -> None:
    url = origin.add("/cli.png", image_bytes(size=(128, 128)), delay=0.3)
    run = _posegen(maps_env, "maps", "fetch", url, "--concurrency", "5", "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    outcomes = sorted(load["outcome"] for load in report["loads"])
    assert outcomes == ["coalesced"] * 4 + ["miss"]
    assert len({load["sha256"] for load in report["loads"]}) == 1
    assert all(load["bytes"] > 0 for load in report["loads"])
    assert origin.count("/cli.png") == 1

    again = _posegen(maps_env, "maps", "fetch", url)
    assert again.returncode == 0
    assert again.stdout.split()[0] == "hit"

    stats = json.loads(_posegen(maps_env, "maps", "stats", "--json").stdout)
    assert stats["counters"]["origin_fetches"] == 1
    assert stats["counters"]["coalesced"] == 4 and stats["counters"]["disk_hits"] == 1
    assert stats["disk"]["entries"] == 1

    cleared = _posegen(maps_env, "maps", "clear")
    assert cleared.returncode == 0 and "removed 1 map(s)" in cleared.stdout
    assert json.loads(_posegen(maps_env, "maps", "stats", "--json").stdout)["disk"]["entries"] == 0


def test_fetch_exits_1_and_names_the_error_kind(origin: Origin, maps_env: dict[str, str]) -> None:
    good = origin.add("/good.png", image_bytes())
    run = _posegen(
        maps_env, "maps", "fetch", good, "file:///etc/passwd", "../secret.png", origin.url("/404")
    )
    assert run.returncode == 1
    lines = run.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["miss", "error", "error", "error"]
    assert [line.split()[3] for line in lines[1:]] == ["bad-scheme", "bad-path", "http-status"]
    assert "Traceback" not in run.stderr


def test_render_writes_the_map(tmp_path: Path, maps_env: dict[str, str]) -> None:
    _cats, poses = builtin_library()
    source = tmp_path / "pose.json"
    source.write_text(json.dumps(poses[0].keypoints))
    out = tmp_path / "pose.png"
    run = _posegen(maps_env, "maps", "render", str(source), "-o", str(out), "--width", "300")
    assert run.returncode == 0, run.stderr
    with Image.open(out) as img:
        assert img.size == (320, 512) and img.mode == "RGB"

    source.write_text("[1, 2")
    bad = _posegen(maps_env, "maps", "render", str(source), "-o", str(out))
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and "Traceback" not in bad.stderr


def test_render_takes_todays_lists_and_says_where_a_pose_is_wrong(
    tmp_path: Path, maps_env: dict[str, str]
) -> None:
    source, out = tmp_path / "pose.json", tmp_path / "pose.png"
    legacy = [[0.5, 0.1 + i * 0.045] for i in range(18)]
    source.write_text(json.dumps(legacy))
    run = _posegen(maps_env, "maps", "render", str(source), "-o", str(out), "--height", "768")
    assert run.returncode == 0, run.stderr
    with Image.open(out) as img:
        assert img.size == (512, 768) and img.getbbox() is not None

    source.write_text(json.dumps({"body": legacy, "hands": [[[0.5, 0.5]] * 20, None]}))
    bad = _posegen(maps_env, "maps", "render", str(source), "-o", str(out))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    lines = bad.stderr.strip().splitlines()
    assert lines == [f"error: {source}: pose.hands[0]: needs exactly 21 points, got 20"]


def test_library_seed_command_is_idempotent(cli_env: dict[str, str], engine: Engine) -> None:
    first = _posegen(cli_env, "library", "seed", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    cats, poses = builtin_library()
    assert report["created"] == len(cats) + len(poses)
    second = json.loads(_posegen(cli_env, "library", "seed", "--json").stdout)
    assert second["created"] == 0 and second["updated"] == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(PoseLibrary)).scalar_one() == len(
            poses
        )
