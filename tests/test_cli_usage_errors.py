"""Every usage error of the real ``posegen`` command is one line on stderr and exit 2.

typer vendors its own copy of click, so catching click's exceptions let each of these print a
full traceback before; each case runs as a real subprocess, as a user would meet it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

POSEGEN = [sys.executable, "-m", "posegen"]

CASES = [
    (("--bogus",), "No such option: --bogus"),
    (("wrok",), "No such command 'wrok'"),
    (("users", "nope"), "No such command 'nope'"),
    (("generate", "--variations", "0"), "--variations"),
    (("generate", "--variations", "many"), "--variations"),
    (("worker", "--concurrency"), "--concurrency"),
    (("users", "create"), "Missing argument"),
    ((), "missing command"),
    (("db",), "missing command"),
]


def _case_id(value: object) -> str | None:
    return "_".join(value) or "bare" if isinstance(value, tuple) else None


@pytest.mark.parametrize(("args", "needle"), CASES, ids=_case_id)
def test_usage_error_is_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...], needle: str):
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSEGEN_")}
    env["POSEGEN_DATA_DIR"] = str(tmp_path)
    proc = subprocess.run(
        [*POSEGEN, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and needle in lines[0], lines[0]
    assert "--help" in lines[0]


def test_help_still_exits_0(tmp_path: Path):
    proc = subprocess.run(
        [*POSEGEN, "generate", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "--variations" in proc.stdout and proc.stderr == ""
