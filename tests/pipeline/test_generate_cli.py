"""``posegen generate`` run as a real command against each engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import Engine, func, select

from posegen import accounts
from posegen.cli import main
from posegen.config import Settings
from posegen.db.models import PoseGeneration, PoseLibrary, Project, Role, Upload
from posegen.library import seed_library


def _run(cli_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "posegen", "generate", *args],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _generations(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(PoseGeneration)).scalar_one())


def test_generate_submits_runs_and_prints_where_the_images_are(
    cli_env: dict[str, str], engine: Engine, settings: Settings, tmp_path: Path
) -> None:
    no_admin = _run(cli_env, "--all-poses")
    assert no_admin.returncode != 0
    assert no_admin.stderr.strip().splitlines() == [
        "error: no admin user yet: create one with `posegen users create NAME EMAIL --admin` "
        "or pass --user"
    ]

    accounts.create_user(engine, "Ada", "ada@example.com", Role.ADMIN)
    seed_library(engine)
    subject = tmp_path / "me.jpg"
    Image.new("RGB", (300, 400), (200, 150, 100)).save(subject)
    done = _run(
        cli_env, "--poses", "1,2", "--variations", "2", "--subject", str(subject),
        "--prompt", "studio photo", "--width", "320", "--height", "256", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "completed" and (out["completed"], out["total"]) == (4, 4)
    assert len(out["images"]) == 4
    assert (out["backend"], out["model"], out["preview"]) == ("posemap", None, True)
    for path in out["images"]:
        assert Path(path).parent == Path(out["folder"])
        with Image.open(path) as img:
            assert img.size == (320, 256)
    assert f"generation {out['generationId']} completed" in done.stderr
    # The subject was validated and stored as the user's own upload, named by its content.
    with engine.connect() as conn:
        row = conn.execute(
            select(Upload.user_id, Upload.sha256, Project.user_id.label("owner"))
            .join(Project, Project.subject_upload_id == Upload.id)
            .where(Project.name == "posegen generate")
        ).one()
    assert row.user_id == row.owner
    assert (settings.effective_uploads_dir / str(row.user_id) / row.sha256[:2]).is_dir()

    text = _run(cli_env, "--prompt", "a dancer", "--user", "ada@example.com")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].endswith("completed: 1 of 1 images") and lines[1].startswith("images: ")
    # the default backend's images are previews, and the output says how to get real ones
    assert lines[2] == "these are posemap previews (a skeleton drawing), not a model's images"
    assert lines[3].startswith("for real images: set POSEGEN_BACKEND=diffusers")


def test_bad_input_is_one_line_and_queues_nothing(
    cli_env: dict[str, str],
    engine: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # In-process (the same ``main`` the console script runs): six cases, no process start-ups.
    for key, value in cli_env.items():
        if key.startswith("POSEGEN_"):
            monkeypatch.setenv(key, value)
    accounts.create_user(engine, "Ada", "ada@example.com", Role.ADMIN)
    accounts.create_user(engine, "Uma", "uma@example.com")
    seed_library(engine)
    with engine.connect() as conn:
        premium = conn.execute(
            select(func.min(PoseLibrary.id)).where(PoseLibrary.premium.is_(True))
        ).scalar_one()
    capsys.readouterr()  # the seeding's log line
    not_image = tmp_path / "notes.png"
    not_image.write_text("not an image")
    cases = [
        (["--poses", "999999"], "no pose with id 999999"),
        (["--poses", "1", "--all-poses"], "give --poses or --all-poses, not both"),
        ([], "give --poses, --all-poses or a --prompt"),
        (["--prompt", "x", "--subject", str(not_image)], ""),
        (["--prompt", "x", "--subject", str(tmp_path / "missing.png")], "cannot read"),
        (["--prompt", "x", "--user", "nobody@example.com"], "no user with e-mail"),
        # The API's old path form names no stored file here: a local path that does not exist.
        (["--prompt", "x", "--subject", "/uploads/subjects/project-1.png"], "cannot read"),
        (["--prompt", "x", "--subject", "file:///etc/passwd"], "cannot read"),
        # A premium pose needs a quota plan (or an admin): a pay-as-you-go user is refused.
        (["--poses", str(premium), "--user", "uma@example.com"], "is a premium pose"),
    ]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_:
            main(["generate", *args])
        assert exit_.value.code != 0, args
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert _generations(engine) == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Upload)).scalar_one() == 0
