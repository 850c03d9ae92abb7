"""The real ``posegen`` command: migrations, verify, users, and clear one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from posegen import accounts
from posegen.db import migrate

POSEGEN = [sys.executable, "-m", "posegen"]


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*POSEGEN, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]


def test_upgrade_verify_on_a_new_database(empty_db_url, tmp_path):
    env = {**os.environ, "POSEGEN_DATA_DIR": str(tmp_path), "POSEGEN_DATABASE_URL": empty_db_url}
    up = run(env, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    ver = run(env, "db", "verify")
    assert ver.returncode == 0, ver.stdout + ver.stderr
    assert "FAIL" not in ver.stdout
    assert "plan recovery scan: plan uses ix_pose_generations_recovery" in ver.stdout
    assert "plan top users: plan uses ix_user_generation_stats_top" in ver.stdout
    # The claim is bound to the worker's backend, and the index (not a filter) serves that.
    assert "plan claim: plan uses ix_pose_generations_claim on backend" in ver.stdout
    assert "plan pending for a backend: plan uses ix_pose_generations_claim on backend" in (
        ver.stdout
    )
    cur = run(env, "db", "current")
    # The head moves with each new revision; the command must name it.
    assert f"current: {migrate.head_revision()}" in cur.stdout

    # verify fails (exit 1) when an index the code relies on is gone
    down = run(env, "db", "downgrade", "0001")
    assert down.returncode == 0, down.stderr
    bad = run(env, "db", "verify")
    assert bad.returncode == 1
    assert "FAIL  index ix_pose_generations_recovery" in bad.stdout


def test_users_create_json_list_revoke(cli_env, engine):
    made = run(cli_env, "users", "create", "Ada", "ADA@example.com", "--admin", "--json")
    assert made.returncode == 0, made.stderr
    obj = json.loads(made.stdout)
    assert set(obj) == {"id", "email", "role", "apiKey"}
    assert obj["role"] == "admin" and obj["email"] == "ada@example.com"
    assert accounts.authenticate(engine, obj["apiKey"]).id == obj["id"]

    # only the hash is stored
    with engine.connect() as conn:
        stored = [r[0] for r in conn.exec_driver_sql("SELECT key_hash FROM api_keys").all()]
    assert obj["apiKey"] not in stored and accounts.hash_key(obj["apiKey"]) in stored

    dup = run(cli_env, "users", "create", "Ada 2", "ada@example.com")
    assert_clean_error(dup, "already exists")

    listed = run(cli_env, "users", "list", "--json")
    assert json.loads(listed.stdout)[0]["activeKeys"] == 1

    revoked = run(cli_env, "users", "revoke-key", "--email", "ada@example.com")
    assert revoked.returncode == 0 and "revoked 1" in revoked.stdout
    assert accounts.authenticate(engine, obj["apiKey"]) is None


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("postgresql://nobody@127.0.0.1:1/none", "database unavailable"),
        ("mysql://x/y", "unsupported database URL scheme"),
        ("postgresql://a:b@[broken/x", "POSEGEN_DATABASE_URL"),
    ],
)
def test_bad_database_urls_are_one_line_errors(tmp_path: Path, url, needle):
    env = {**os.environ, "POSEGEN_DATA_DIR": str(tmp_path), "POSEGEN_DATABASE_URL": url}
    assert_clean_error(run(env, "db", "current"), needle)


def test_unknown_revision_and_bad_email(cli_env):
    assert_clean_error(run(cli_env, "db", "downgrade", "nope"), "nope")
    assert_clean_error(run(cli_env, "users", "create", "X", "not-an-email"), "e-mail")


def test_config_masks_secrets(tmp_path):
    env = {
        **os.environ,
        "POSEGEN_DATA_DIR": str(tmp_path),
        "POSEGEN_DATABASE_URL": "postgresql://u:topsecret@db.example/x",
    }
    out = run(env, "config")
    assert out.returncode == 0
    assert "topsecret" not in out.stdout and "u:***@db.example" in out.stdout
    assert "POSEGEN_LEASE_SECONDS" in out.stdout
