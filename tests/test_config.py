from __future__ import annotations

import pytest

from posegen.config import load_settings, mask_url
from posegen.exceptions import ConfigError


def test_defaults_and_derived_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("POSEGEN_DATABASE_URL", raising=False)
    s = load_settings(data_dir=tmp_path)
    assert s.effective_database_url == f"sqlite:///{tmp_path.resolve() / 'posegen.db'}"
    assert s.effective_uploads_dir == tmp_path / "uploads"
    assert s.lease_seconds == 60 and s.recovery_interval_seconds == 30 and s.max_attempts == 3
    assert s.backend == "posemap"
    assert s.fetch_timeout_seconds == 10 and s.fetch_max_bytes == 20 * 1024 * 1024


def test_environment_is_read_at_build_time_not_import(monkeypatch, tmp_path):
    monkeypatch.setenv("POSEGEN_LEASE_SECONDS", "12")
    monkeypatch.setenv("POSEGEN_FETCH_ALLOWLIST", "10.0.0.0/8, origin.internal")
    s = load_settings(data_dir=tmp_path)
    assert s.lease_seconds == 12
    assert s.fetch_allowlist_items == ["10.0.0.0/8", "origin.internal"]


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("POSEGEN_DATABASE_URL", "mysql://x/y", "unsupported database URL scheme"),
        ("POSEGEN_LEASE_SECONDS", "-1", "POSEGEN_LEASE_SECONDS"),
        ("POSEGEN_FETCH_ALLOWLIST", "10.0.0.0/99", "bad CIDR"),
        ("POSEGEN_BACKEND", "dalle", "POSEGEN_BACKEND"),
    ],
)
def test_bad_settings_give_one_clear_error(monkeypatch, env, value, needle):
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert needle in info.value.message
    assert "\n" not in info.value.message


def test_masking_hides_passwords():
    assert mask_url("postgresql://bob:secret@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert mask_url("sqlite:///tmp/x.db") == "sqlite:///tmp/x.db"
    s = load_settings(database_url="postgresql://bob:secret@db/x", session_secret="hush")
    masked = s.masked()
    assert ":secret@" not in str(masked) and "hush" not in str(masked)
    assert masked["session_secret"] == "***"
