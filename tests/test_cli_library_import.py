"""``posegen library import`` as a real process on both engines: checked, all or nothing per
file, idempotent by slug, and every refusal named (file, pose, reason)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from posegen.db.models import PoseCategory, PoseLibrary
from posegen.library import DATA_FILE, builtin_library

_, BUILTIN = builtin_library()
NEUTRAL = next(p for p in BUILTIN if p.slug == "standing-neutral").keypoints


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "posegen", "library", "import", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def entry(slug: str, keypoints: Any = None, **extra: Any) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": slug.replace("-", " ").title(),
        "category": "imported",
        "description": "An operator's pose.",
        "tags": ["imported"],
        "keypoints": keypoints if keypoints is not None else NEUTRAL,
        **extra,
    }


def stretched() -> dict[str, Any]:
    kp = copy.deepcopy(NEUTRAL)
    body = kp["people"][0]["body"]
    elbow, wrist = body[6], body[7]
    body[7] = [elbow[0] + 2.2 * (wrist[0] - elbow[0]), elbow[1] + 2.2 * (wrist[1] - elbow[1]), 1]
    return kp


def slugs(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(PoseLibrary.slug)).scalars())


def test_import_is_checked_all_or_nothing_per_file_and_idempotent(
    engine: Engine, cli_env: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "poses"
    folder.mkdir()
    good = {
        "categories": [{"slug": "imported", "name": "Imported", "parent": None}],
        "poses": [
            entry("op-neutral", difficulty="beginner", premium=True, framing="full_body"),
            entry("op-legacy", [p[:2] if p else None for p in NEUTRAL["people"][0]["body"]]),
            entry("op-wave", next(p for p in BUILTIN if p.slug == "hands-wave").keypoints),
        ],
    }
    (folder / "a-good.json").write_text(json.dumps(good))
    # One bad entry refuses the whole file: op-fine must not be written either.
    bad = [
        entry("op-fine"),
        entry("op-stretched", stretched()),
        entry("Bad Slug"),
        entry("op-extra", colour="red"),
        entry("op-hard", difficulty="expert"),
    ]
    (folder / "b-bad.json").write_text(json.dumps(bad))
    (folder / "c-broken.json").write_text("{not json")
    (folder / "notes.txt").write_text("not a pose file: ignored")

    first = run(cli_env, str(folder))
    assert first.returncode == 1, first.stderr
    assert "a-good.json: 3 poses (4 created, 0 updated, 0 unchanged)" in first.stdout
    err = first.stderr
    assert "refused" in err and "b-bad.json: nothing imported from this file" in err
    assert "pose op-stretched: not a plausible human pose: left forearm is" in err
    assert "pose Bad Slug: slug: lowercase letters" in err
    assert "pose op-extra: unknown field(s) colour" in err
    assert "pose op-hard: difficulty: one of beginner, intermediate, advanced" in err
    assert "pose op-fine" not in err  # the good entry of a bad file is not blamed...
    assert "c-broken.json: not a readable JSON file" in err
    assert "Traceback" not in err
    assert slugs(engine) == {"op-neutral", "op-legacy", "op-wave"}  # ...nor written

    # Again: nothing changes, and --json says so per file.
    again = run(cli_env, str(folder), "--json")
    assert again.returncode == 1
    report = json.loads(again.stdout)
    files = {Path(f["file"]).name: f for f in report["files"]}
    assert report["ok"] is False
    assert files["a-good.json"]["status"] == "imported"
    assert (files["a-good.json"]["created"], files["a-good.json"]["updated"]) == (0, 0)
    assert files["a-good.json"]["unchanged"] == 4
    assert files["b-bad.json"]["status"] == "refused" and len(files["b-bad.json"]["errors"]) == 4
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(PoseLibrary)).scalar_one() == 3
        stored = conn.execute(
            select(PoseLibrary.keypoints).where(PoseLibrary.slug == "op-legacy")
        ).scalar_one()
    assert stored == NEUTRAL  # legacy [x, y] lists are stored in the one canonical shape

    # One changed pose is updated; a file holding a list may use a category already there.
    good["poses"][2]["name"] = "Operator wave"
    (folder / "a-good.json").write_text(json.dumps(good))
    (folder / "b-bad.json").unlink()
    (folder / "c-broken.json").unlink()
    third = run(cli_env, str(folder))
    assert third.returncode == 0, third.stderr
    assert "(0 created, 1 updated, 3 unchanged)" in third.stdout
    single = tmp_path / "one.json"
    single.write_text(json.dumps([entry("op-solo")]))
    assert run(cli_env, str(single)).returncode == 0
    assert "op-solo" in slugs(engine)


def test_a_file_naming_an_unknown_category_writes_nothing(
    engine: Engine, cli_env: dict[str, str], tmp_path: Path
) -> None:
    # The category is only found missing inside the write transaction, after op-first was
    # inserted: the transaction rolls back, so the file is still all or nothing.
    path = tmp_path / "cats.json"
    path.write_text(
        json.dumps(
            {
                "categories": [{"slug": "imported", "name": "Imported"}],
                "poses": [entry("op-first"), {**entry("op-orphan"), "category": "nowhere"}],
            }
        )
    )
    result = run(cli_env, str(path))
    assert result.returncode == 1
    assert "pose op-orphan: no category 'nowhere'" in result.stderr
    assert slugs(engine) == set()
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(PoseCategory)).scalar_one() == 0
    missing = run(cli_env, str(tmp_path / "absent"))
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr


def test_the_shipped_library_file_imports_as_it_is(engine: Engine, cli_env: dict[str, str]) -> None:
    # builtin_poses.json is itself an import file: every pose passes the importer's checks,
    # and importing it twice leaves the second run with nothing to do.
    path = Path(__file__).parents[1] / "src/posegen/library" / DATA_FILE
    first = run(cli_env, str(path), "--json")
    assert first.returncode == 0, first.stdout + first.stderr
    (only,) = json.loads(first.stdout)["files"]
    assert only["created"] == len(BUILTIN) + len(builtin_library()[0])
    second = json.loads(run(cli_env, str(path), "--json").stdout)["files"][0]
    assert (second["created"], second["updated"]) == (0, 0)
    assert len(slugs(engine)) == len(BUILTIN)


def test_concurrent_imports_of_one_file_create_each_pose_exactly_once(
    engine: Engine, tmp_path: Path
) -> None:
    # 40 importers race on the same new slugs: each row is created by exactly one of them, the
    # others find it there (unchanged), and none fails.
    from concurrent.futures import ThreadPoolExecutor

    from posegen.library.importer import import_library

    path = tmp_path / "race.json"
    path.write_text(
        json.dumps(
            {
                "categories": [{"slug": "imported", "name": "Imported"}],
                "poses": [entry(f"op-race-{i}", p.keypoints) for i, p in enumerate(BUILTIN[:6])],
            }
        )
    )
    with ThreadPoolExecutor(max_workers=40) as pool:
        reports = list(pool.map(lambda _: import_library(engine, path), range(40)))
    files = [r.files[0] for r in reports]
    assert all(f.imported for f in files), [f.errors for f in files if f.errors]
    assert sum(f.created for f in files) == 7  # 1 category + 6 poses, once each
    assert sum(f.updated for f in files) == 0
    assert sum(f.unchanged for f in files) == 40 * 7 - 7
    assert slugs(engine) == {f"op-race-{i}" for i in range(6)}
