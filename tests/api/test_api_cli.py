"""``posegen up`` and ``posegen serve`` as real processes: migrate, seed, first admin key printed
once, a generation run end to end over HTTP by the in-process worker, and a clean SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

POSEGEN = [sys.executable, "-m", "posegen"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _running(env: dict[str, str], *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``posegen ARGS``, wait until /readyz answers; SIGTERM it on the way out."""
    port = _free_port()
    proc = subprocess.Popen(
        [*POSEGEN, *args, "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _trickle_is_cut_off(base: str, within: float) -> bool:
    """A socket trickling one header byte every 0.1 s is closed by the server in time."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        s.settimeout(0.1)
        end = time.monotonic() + within
        while time.monotonic() < end:
            try:
                s.send(b"X")
                if s.recv(1024) == b"":
                    return True
            except TimeoutError:
                continue
            except OSError:
                return True
    return False


def _first_line(proc: subprocess.Popen[str]) -> dict[str, Any]:
    assert proc.stdout is not None
    return dict(json.loads(proc.stdout.readline()))


def test_up_runs_api_worker_and_recovery_and_stops_cleanly(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "POSEGEN_BACKEND": "posemap"}
    with _running(env, "up") as (proc, base):
        info = _first_line(proc)
        key = info["adminApiKey"]
        assert info["poses"] > 0 and info["api"] == base + "/api/pose-generator"
        assert info["backend"] == "posemap"
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=info["api"], headers=auth, timeout=10) as client:
            pid = client.post("/projects", json={"name": "up"}).json()["id"]
            r = client.post("/generations", json={"projectId": pid, "poseIds": [1, 2]})
            assert r.status_code == 202, r.text
            gid = r.json()["id"]
            deadline = time.monotonic() + 60
            while (g := client.get(f"/generations/{gid}").json())["status"] != "completed":
                assert g["status"] in ("pending", "processing"), g
                assert time.monotonic() < deadline, g
                time.sleep(0.2)
            results = client.get(f"/generations/{gid}/results").json()
            assert len(results) == 2
            assert [(r["backend"], r["preview"]) for r in results] == [("posemap", True)] * 2
            image = httpx.get(base + results[0]["imageUrl"], headers=auth)
            assert image.headers["content-type"] == "image/png" and image.content[:4] == b"\x89PNG"
            workers = client.get("/admin/workers").json()
            assert [(w["alive"], w["backend"]) for w in workers] == [(True, "posemap")]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert proc.stderr is not None
        # `posegen up` (and so `make run`) says the default backend only draws previews
        assert "for real images set POSEGEN_BACKEND=diffusers" in proc.stderr.read()
    # A second start keeps the existing admin: no new key is printed.
    with _running({**env, "POSEGEN_HTTP_HEADER_TIMEOUT_SECONDS": "1"}, "up") as (proc, base):
        assert "adminApiKey" not in _first_line(proc)
        assert httpx.get(base + "/api/pose-generator/projects", headers=auth).status_code == 200
        assert _trickle_is_cut_off(base, within=4.0)


def test_serve_refuses_an_unmigrated_database(empty_db_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSEGEN_")}
    env |= {"POSEGEN_DATA_DIR": str(tmp_path), "POSEGEN_DATABASE_URL": empty_db_url}
    proc = subprocess.run(
        [*POSEGEN, "serve", "--port", str(_free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().startswith("error:") and "posegen db upgrade" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_answers_until_sigterm(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "POSEGEN_HTTP_HEADER_TIMEOUT_SECONDS": "1"}
    with _running(env, "serve") as (proc, base):
        assert httpx.get(base + "/healthz").json() == {"status": "ok"}
        assert httpx.get(base + "/api/pose-generator/projects").status_code == 401
        # The header deadline is on in the real command (uvicorn alone would wait forever).
        assert _trickle_is_cut_off(base, within=4.0)
        assert httpx.get(base + "/healthz").status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
