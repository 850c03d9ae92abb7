"""Scrape-time collectors, and a real worker process serving them on --metrics-port."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from posegen import accounts
from posegen.controlnet import MapCache
from posegen.db.models import PoseGeneration, Project
from posegen.db.types import utcnow
from posegen.metrics.exposition import build_registry, render


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_registry_reads_queue_pool_and_map_cache_at_scrape_time(engine, settings):
    user = accounts.create_user(engine, "U", "u@example.com").account.id
    with engine.begin() as conn:
        project = conn.execute(
            insert(Project).values(user_id=user, name="p").returning(Project.id)
        ).scalar_one()
        past = utcnow().replace(year=2020)
        conn.execute(
            insert(PoseGeneration),
            [
                {
                    "user_id": user,
                    "project_id": project,
                    "type": "text",
                    "variations": 1,
                    "total_expected_poses": 1,
                    "status": status,
                    "created_at": past,
                    "run_after": past,
                }
                for status in ("pending", "pending", "processing", "completed")
            ],
        )
    maps = MapCache(settings)
    registry = build_registry(engine, queue=True, map_cache_stats=maps.stats)
    with engine.connect():  # one connection checked out while scraping
        got = samples(render(registry).decode())
    assert got[("posegen_queue_depth", (("status", "pending"),))] == 2
    assert got[("posegen_queue_depth", (("status", "processing"),))] == 1
    assert got[("posegen_queue_lag_seconds", ())] > 3600 * 24 * 365  # waiting since 2020
    assert got[("posegen_queue_scrape_ok", ())] == 1
    assert got[("posegen_db_pool_connections", (("state", "checked_out"),))] >= 1
    assert got[("posegen_db_pool_capacity", ())] == settings.db_pool_size + settings.db_max_overflow
    assert got[("posegen_map_cache_hits_total", (("tier", "memory"),))] == 0
    assert ("posegen_map_cache_origin_fetches_total", ()) in got

    worker_registry = build_registry(engine, map_cache_stats=maps.stats)  # workers: no queue
    assert "posegen_queue_depth" not in render(worker_registry).decode()


def test_queue_figures_say_when_the_database_is_down():
    from posegen.config import load_settings
    from posegen.db.engine import make_engine

    dead = make_engine(
        load_settings(
            database_url="postgresql://nobody@127.0.0.1:1/none", db_connect_timeout_seconds=1
        )
    )
    try:
        got = samples(render(build_registry(dead, queue=True)).decode())
    finally:
        dead.dispose()
    assert got[("posegen_queue_scrape_ok", ())] == 0
    assert not any(name == "posegen_queue_depth" for name, _ in got)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_worker_process_serves_its_metrics(cli_env):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "posegen", "worker", "--metrics-port", str(port)],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        body = None
        while body is None:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "worker metrics never came up"
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.HTTPError:
                time.sleep(0.1)
        for name in (
            "posegen_claims_total",
            "posegen_worker_in_flight",
            "posegen_db_pool_connections",
            "posegen_map_cache_hits_total",
            "posegen_map_cache_coalesced_total",
            "posegen_generator_seconds",
        ):
            assert f"# TYPE {name} " in body, name
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_several_processes_behind_one_port_are_summed(tmp_path):
    """``serve --workers N`` with PROMETHEUS_MULTIPROC_DIR: one scrape sees every process."""
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    bump = "from posegen.metrics import prom; prom.CLAIMS.inc({})"
    for n in (2, 3):
        subprocess.run([sys.executable, "-c", bump.format(n)], env=env, check=True, timeout=60)
    scrape = (
        "from posegen.metrics.exposition import build_registry, render; "
        "print(render(build_registry()).decode())"
    )
    out = subprocess.run(
        [sys.executable, "-c", scrape],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    assert samples(out)[("posegen_claims_total", ())] == 5


def test_worker_metrics_need_the_metrics_token(cli_env):
    """With POSEGEN_METRICS_TOKEN set, the worker's port answers only scrapes that send it."""
    port = free_port()
    env = {**cli_env, "POSEGEN_METRICS_TOKEN": "scrape-s3cret"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "posegen", "worker", "--metrics-port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "worker metrics never came up"
            try:
                refused = httpx.get(url, timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert refused.status_code == 401 and "posegen_" not in refused.text
        assert refused.headers["www-authenticate"] == "Bearer"
        wrong = httpx.get(url, headers={"Authorization": "Bearer nope"}, timeout=5)
        assert wrong.status_code == 401
        ok = httpx.get(url, headers={"Authorization": "Bearer scrape-s3cret"}, timeout=5)
        assert ok.status_code == 200 and "# TYPE posegen_claims_total " in ok.text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_worker_refuses_an_open_metrics_port_off_loopback(cli_env):
    """Binding the metrics port to the network without a token is refused at start (exit 2)."""
    env = {**cli_env, "POSEGEN_API_HOST": "0.0.0.0"}
    env.pop("POSEGEN_METRICS_TOKEN", None)
    done = subprocess.run(
        [sys.executable, "-m", "posegen", "worker", "--metrics-port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "POSEGEN_METRICS_TOKEN" in lines[0], done.stderr
