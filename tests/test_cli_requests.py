"""``posegen requests`` against a real database (both engines): list with a status filter, and
review: approve, a wrong-state move refused in one line, reject needing a note, complete by slug."""

from __future__ import annotations

import json
import subprocess
import sys

from sqlalchemy import Engine

from posegen import accounts, community
from posegen.library import seed_library


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "posegen", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_list_and_review(engine: Engine, cli_env: dict[str, str]) -> None:
    seed_library(engine)
    user = accounts.create_user(engine, "Req", "req@example.com").account
    first = community.create_request(engine, user.id, "Tree pose").id
    second = community.create_request(engine, user.id, "Cartwheel").id

    approved = run(cli_env, "requests", "review", str(first), "--approve", "--note", "nice")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"request {first} (Tree pose) is now approved"
    again = run(cli_env, "requests", "review", str(first), "--approve")
    assert again.returncode == 1 and again.stderr.startswith("error: request")
    assert "approved" in again.stderr and "Traceback" not in again.stderr
    no_note = run(cli_env, "requests", "review", str(second), "--reject")
    assert no_note.returncode == 1 and no_note.stderr == "error: say why in a note when rejecting\n"

    listed = run(cli_env, "requests", "list", "--status", "open", "--json")
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [second]
    done = run(
        cli_env, "requests", "review", str(first), "--complete", "standing-neutral", "--json"
    )
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert (row["status"], row["pose"], row["note"]) == ("completed", "standing-neutral", "nice")
    events = community.list_events(engine, first)
    assert [e.status.value for e in events] == ["open", "approved", "completed"]
