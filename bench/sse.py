"""Live progress for many watchers: the shared event feed against one poller per stream.

Starts the real API (``posegen serve``, one process) on a scratch database (PostgreSQL and
SQLite), opens
``--streams`` concurrent event streams (plain HTTP/1.0 sockets, so the client stays light) over
``--generations`` generations, and has a separate process append an event to each generation
every 50-200 ms through the queue's own ``events.append`` (the PostgreSQL trigger NOTIFYs).
Measured over ``--seconds``: delivery latency (commit to receipt) p50/p99, events lost or
repeated per stream, ``GET /healthz`` and ``GET /generations/{id}`` p99 from a third process,
database transactions/s (PostgreSQL's ``pg_stat_database``, the emitter's own subtracted), the
API process's CPU and memory per stream, and the client's own CPU (a busy client delays
receipt). Each size runs with ``POSEGEN_SSE_FEED=shared`` and ``=poll`` (the old design) in the
same run.

Goal (issue 20): 2,000 streams on one API process, delivery p99 < 250 ms, other p99 < 50 ms,
0 lost, 0 repeated, queries independent of the number of streams.

    .venv/bin/python bench/sse.py                          # 100 and 1,000 streams, both engines
    .venv/bin/python bench/sse.py --streams 2000 --engines postgresql --modes shared
"""

from __future__ import annotations

import sys

# bench/queue.py would shadow the standard library's queue module; look in bench/ last.
sys.path.append(sys.path.pop(0))

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing
import os
import random
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from pgbench_util import (
    add_database_args,
    connect,
    emit,
    machine,
    migrate,
    migrated_database,
    table,
)

PREFIX = "/api/pose-generator"
EVENT_ID = re.compile(rb"^id: ?(\d+)", re.M)


# Not imported from bench/api.py: importing it would run its sys.path shuffle a second time.
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def database(kind: str, admin_url: str) -> Iterator[str]:
    if kind == "postgresql":
        with migrated_database(admin_url, "bench_sse") as url:
            yield url
    else:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/bench.db"
            migrate(url)
            yield url


def start_api(url: str, data_dir: Path, mode: str, streams: int, poll: float) -> Any:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSEGEN_")}
    env.update(
        POSEGEN_DATABASE_URL=url,
        POSEGEN_DATA_DIR=str(data_dir),
        POSEGEN_SSE_FEED=mode,
        POSEGEN_SSE_MAX_STREAMS_PER_USER=str(streams + 10),
        POSEGEN_POLL_INTERVAL_SECONDS=str(poll),
        POSEGEN_SUBMISSIONS_PER_MINUTE="100000",
        POSEGEN_MAX_ACTIVE_GENERATIONS="100000",
        POSEGEN_HTTP_MAX_CONNECTIONS=str(streams + 500),
        POSEGEN_HTTP_ACCESS_LOG="false",
    )
    # What an operator runs: `posegen serve`, one process, its own server settings.
    cmd = [sys.executable, "-m", "posegen", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the API did not start within 30 s")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def emitter(url: str, gids: list[int], seconds: float, out: str, ready: Any, go: Any) -> None:
    """Append an event to each generation every 50-200 ms; then ``completed`` to each."""
    from posegen.config import load_settings
    from posegen.db.engine import make_engine
    from posegen.queue import events

    engine = make_engine(load_settings(database_url=url))
    # One connection for the whole run: no pool checkout (and ping) per transaction, so the
    # database's transaction count holds exactly the emitter's commits plus the API's reads.
    conn = engine.connect()
    ready.set()
    go.wait()
    stop_at = time.time() + seconds
    rng = random.Random(1)
    due = {g: time.time() + rng.uniform(0.05, 0.2) for g in gids}
    seq = dict.fromkeys(gids, 0)
    commits: list[tuple[int, int, float]] = []
    tx = 0
    while time.time() < stop_at:
        now = time.time()
        ready = [g for g, t in due.items() if t <= now]
        if not ready:
            time.sleep(max(0.0, min(due.values()) - time.time()))
            continue
        for g in ready:
            seq[g] += 1
            due[g] = now + rng.uniform(0.05, 0.2)
        with conn.begin():
            events.append(
                conn,
                [
                    events.Event(g, "pose", events.progress("processing", seq[g], 0, 10**9))
                    for g in ready
                ],
            )
        t = time.time()
        tx += 1
        commits += [(g, seq[g], t) for g in ready]
    with conn.begin():
        events.append(
            conn,
            [events.Event(g, "completed", events.progress("completed", -1, 0, 0)) for g in gids],
        )
    t = time.time()
    commits += [(g, -1, t) for g in gids]
    conn.close()
    engine.dispose()
    Path(out).write_text(json.dumps({"commits": commits, "transactions": tx + 1}))


def prober(port: int, key: str, gid: int, seconds: float, out: str, ready: Any, go: Any) -> None:
    """Time other requests under the load, one after another."""
    health: list[float] = []
    read: list[float] = []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        ready.set()
        go.wait()
        stop_at = time.time() + seconds
        auth = {"Authorization": f"Bearer {key}"}
        while time.time() < stop_at:
            t = time.perf_counter()
            client.get("/healthz").raise_for_status()
            health.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            client.get(f"{PREFIX}/generations/{gid}", headers=auth).raise_for_status()
            read.append((time.perf_counter() - t) * 1000)
            time.sleep(0.02)
    Path(out).write_text(json.dumps({"health": health, "read": read}))


async def watch(
    port: int, key: str, gid: int, got: list[tuple[int, float]], ready: asyncio.Event
) -> None:
    """One stream over a raw socket (HTTP/1.0: no chunking); records (event id, receipt time)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    writer.write(
        f"GET {PREFIX}/generations/{gid}/events HTTP/1.0\r\nHost: bench\r\n"
        f"Authorization: Bearer {key}\r\nAccept: text/event-stream\r\n\r\n".encode()
    )
    status = await reader.readline()
    if b" 200 " not in status:
        raise RuntimeError(f"stream refused: {status!r}")
    while (await reader.readline()) not in (b"\r\n", b""):
        pass
    # Whole chunks, ids picked out by a regex: the client must stay cheaper than the server.
    rest = b""
    while chunk := await reader.read(1 << 16):
        now = time.time()
        buf = rest + chunk
        cut = buf.rfind(b"\n") + 1
        rest = buf[cut:]
        ids = EVENT_ID.findall(buf, 0, cut)
        if ids:
            got.extend((int(i), now) for i in ids)
            ready.set()
    writer.close()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def pg_transactions(url: str) -> int:
    with connect(url) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def scenario(kind: str, mode: str, streams: int, args: argparse.Namespace) -> dict[str, Any]:
    from posegen import accounts
    from posegen.config import load_settings
    from posegen.db.engine import make_engine
    from posegen.library import seed_library

    with database(kind, args.admin_url) as url, tempfile.TemporaryDirectory() as data:
        engine = make_engine(load_settings(database_url=url))
        seed_library(engine)
        key = accounts.create_user(engine, "Bench", "bench@example.com").api_key
        proc, port = start_api(url, Path(data), mode, streams, args.poll)
        try:
            gens = min(args.generations, streams)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}{PREFIX}", timeout=30) as c:
                h = {"Authorization": f"Bearer {key}"}
                pid = c.post("/projects", json={"name": "b"}, headers=h).json()["id"]
                gids = [
                    c.post(
                        "/generations", json={"projectId": pid, "poseIds": [1]}, headers=h
                    ).json()["id"]
                    for _ in range(gens)
                ]
            rss0 = rss_kib(proc.pid)
            result = asyncio.run(_load(kind, url, port, key, gids, streams, proc.pid, args))
            result["api_rss_per_stream_kib"] = round((result.pop("rss_kib") - rss0) / streams, 1)
        finally:
            proc.terminate()
            proc.wait(10)
            engine.dispose()
    return {"engine": kind, "mode": mode, "streams": streams, "generations": gens, **result}


async def _load(
    kind: str,
    url: str,
    port: int,
    key: str,
    gids: list[int],
    streams: int,
    pid: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    got: list[list[tuple[int, float]]] = [[] for _ in range(streams)]
    readies = [asyncio.Event() for _ in range(streams)]
    owner = [gids[i % len(gids)] for i in range(streams)]
    tasks = []
    for i in range(streams):
        tasks.append(asyncio.create_task(watch(port, key, owner[i], got[i], readies[i])))
        if i % 50 == 49:
            await asyncio.sleep(0.05)  # open them in waves, as a busy day would
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), 120)
    tmp = Path(tempfile.mkdtemp())
    ctx = multiprocessing.get_context("spawn")
    ready_em, ready_pr, go = ctx.Event(), ctx.Event(), ctx.Event()
    em = ctx.Process(
        target=emitter, args=(url, gids, args.seconds, str(tmp / "emit.json"), ready_em, go)
    )
    pr = ctx.Process(
        target=prober,
        args=(port, key, gids[0], args.seconds, str(tmp / "probe.json"), ready_pr, go),
    )
    em.start()
    pr.start()
    # Both started (their imports take seconds on a busy machine) before the window opens.
    while not (ready_em.is_set() and ready_pr.is_set()):
        await asyncio.sleep(0.05)
    tx0 = pg_transactions(url) if kind == "postgresql" else 0
    # The client's own collections (its receipt lists grow by thousands a second) would
    # stall every stream's reads and count as delivery latency: none during the window.
    gc.collect()
    gc.disable()
    cpu0, t0, client0 = cpu_seconds(pid), time.monotonic(), time.process_time()
    go.set()
    rss_peak = 0
    while em.is_alive() or pr.is_alive():
        rss_peak = max(rss_peak, rss_kib(pid))
        await asyncio.sleep(0.25)
    cpu, window = cpu_seconds(pid) - cpu0, time.monotonic() - t0
    client_cpu = time.process_time() - client0
    gc.enable()
    tx = pg_transactions(url) - tx0 if kind == "postgresql" else 0
    done, pending = await asyncio.wait(tasks, timeout=30)
    for t in pending:
        t.cancel()
    errors = sum(1 for t in done if t.exception() is not None)
    emitted = json.loads((tmp / "emit.json").read_text())
    probe = json.loads((tmp / "probe.json").read_text())

    # Which event id is which commit: join the emitter's (generation, seq) with the table.
    from sqlalchemy import select

    from posegen.config import load_settings
    from posegen.db.engine import make_engine
    from posegen.db.models import GenerationEvent as E

    engine = make_engine(load_settings(database_url=url))
    with engine.connect() as conn:
        rows = conn.execute(select(E.id, E.generation_id, E.kind, E.data).order_by(E.id)).all()
    engine.dispose()
    committed = {(g, s): t for g, s, t in emitted["commits"]}
    when: dict[int, float] = {}
    expected: dict[int, list[int]] = {}
    for r in rows:
        expected.setdefault(r.generation_id, []).append(r.id)
        seq = -1 if r.kind == "completed" else (r.data or {}).get("completed")
        if (r.generation_id, seq) in committed and r.kind != "queued":
            when[r.id] = committed[(r.generation_id, seq)]
    lost = repeated = 0
    latencies: list[float] = []
    for i in range(streams):
        ids = [e for e, _ in got[i]]
        repeated += len(ids) - len(set(ids))
        lost += len(set(expected[owner[i]]) - set(ids))
        latencies += [(t - when[e]) * 1000 for e, t in got[i] if e in when]
    other = probe["health"] + probe["read"]
    return {
        "delivery_p50_ms": pct(latencies, 0.5),
        "delivery_p99_ms": pct(latencies, 0.99),
        "delivered": len(latencies),
        "lost": lost,
        "repeated": repeated,
        "stream_errors": errors,
        "healthz_p50_ms": pct(probe["health"], 0.5),
        "healthz_p99_ms": pct(probe["health"], 0.99),
        "get_generation_p50_ms": pct(probe["read"], 0.5),
        "get_generation_p99_ms": pct(probe["read"], 0.99),
        "other_p99_ms": pct(other, 0.99),
        "db_tx_per_s": round((tx - emitted["transactions"]) / window, 1)
        if kind == "postgresql"
        else None,
        "events_per_s": round(len(emitted["commits"]) / window, 1),
        "api_cpu_ms_per_stream_s": round(cpu * 1000 / window / streams, 3),
        "api_cpu_pct": round(100 * cpu / window, 1),
        # The streams' client (this process): when it is as busy as the API, part of the
        # delivery latency is the client's own backlog of frames to read.
        "client_cpu_pct": round(100 * client_cpu / window, 1),
        "rss_kib": rss_peak,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_args(ap, keep=False)
    ap.add_argument("--streams", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--engines", nargs="+", default=["postgresql", "sqlite"])
    ap.add_argument("--modes", nargs="+", default=["shared", "poll"])
    ap.add_argument("--generations", type=int, default=50, help="generations the streams share")
    ap.add_argument("--seconds", type=float, default=6.0, help="load window per run")
    ap.add_argument("--poll", type=float, default=0.1, help="POSEGEN_POLL_INTERVAL_SECONDS")
    args = ap.parse_args()
    info = machine()
    print(f"machine: {info}")
    results = []
    for n in args.streams:
        for kind in args.engines:
            for mode in args.modes:
                r = scenario(kind, mode, n, args)
                results.append(r)
                print(json.dumps(r), flush=True)
    cols = [
        "engine", "mode", "streams", "delivery_p50_ms", "delivery_p99_ms", "lost", "repeated",
        "healthz_p99_ms", "get_generation_p99_ms", "db_tx_per_s", "api_cpu_pct", "client_cpu_pct",
        "api_cpu_ms_per_stream_s", "api_rss_per_stream_kib",
    ]  # fmt: skip
    table([tuple(cols), *[tuple(str(r[c]) for c in cols) for r in results]])
    top = max(args.streams)
    mine = [r for r in results if r["mode"] == "shared" and r["streams"] == top] or results
    figures = {
        "streams": top,
        "delivery_p99_ms": max(r["delivery_p99_ms"] for r in mine),
        "other_p99_ms": max(r["other_p99_ms"] for r in mine),
        "lost": sum(r["lost"] for r in mine),
        "repeated": sum(r["repeated"] for r in mine),
        "engines": sorted({r["engine"] for r in mine}),
        "loadavg_1m": info["loadavg_1m"],
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
    }
    figures["target_met"] = (
        top >= 2000
        and figures["delivery_p99_ms"] < 250
        and figures["other_p99_ms"] < 50
        and figures["lost"] == 0
        and figures["repeated"] == 0
    )
    emit(figures)


if __name__ == "__main__":
    main()
