"""Connection exhaustion (class 4), against the real server as ``posegen serve`` configures it,
with raw sockets: trickled headers and idle sockets are closed after the header deadline, a
trickled body gets 408, connections past the ceiling are dropped, requests past the request cap
get 503 while event streams still pass, and each user has a cap on open event streams. Other
clients are served throughout."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from api_helpers import Keys, problem_of
from live_server import live_server
from sqlalchemy import Engine

from posegen.api.app import create_app
from posegen.config import Settings


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.settimeout(10)
    return s


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes ``sock`` within ``seconds`` (what it sent first is skipped)."""
    sock.settimeout(seconds)
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            if sock.recv(65536) == b"":
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def _healthy(base: str) -> float:
    t0 = time.monotonic()
    with httpx.Client(timeout=5) as c:
        assert c.get(base + "/healthz").status_code == 200
    return time.monotonic() - t0


@pytest.fixture
def fast_limits(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "http_header_timeout_seconds": 1.0,
            "http_body_timeout_seconds": 1.0,
            "http_keepalive_seconds": 1.0,
        }
    )


@pytest.fixture
def served(fast_limits: Settings, engine: Engine) -> Iterator[tuple[str, int]]:
    with live_server(create_app(fast_limits, engine), fast_limits) as where:
        yield where


def test_trickled_headers_and_idle_sockets_are_closed_and_others_served(
    served: tuple[str, int],
) -> None:
    base, port = served
    trickling = [_connect(port) for _ in range(20)]
    idle = [_connect(port) for _ in range(20)]
    for s in trickling:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    stop = threading.Event()

    def trickle() -> None:
        # One header byte per socket every 0.1 s: each byte would reset a keep-alive timer.
        while not stop.is_set():
            for s in trickling:
                try:
                    s.send(b"X")
                except OSError:
                    pass
            stop.wait(0.1)

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        # Served while 40 sockets hang on.
        assert _healthy(base) < 3.0
        started = time.monotonic()
        # Deadline 1 s; the margin is for a loaded machine (without the deadline: never).
        assert all(_closed_within(s, 6.0) for s in trickling + idle)
        assert time.monotonic() - started < 6.0
        assert _healthy(base) < 3.0
    finally:
        stop.set()
        t.join(5)
        for s in trickling + idle:
            s.close()


def test_keep_alive_connection_is_cut_off_when_the_next_request_trickles(
    served: tuple[str, int],
) -> None:
    _, port = served
    s = _connect(port)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in s.recv(65536)
    s.sendall(b"GET /healthz HTTP/1.1\r\n")
    t0 = time.monotonic()
    closed = False
    while time.monotonic() - t0 < 6.0:
        try:
            s.send(b"X")
        except OSError:
            closed = True
            break
        if _closed_within(s, 0.2):
            closed = True
            break
    s.close()
    assert closed and time.monotonic() - t0 < 6.0


def test_trickled_body_gets_408_and_the_connection_closes(
    served: tuple[str, int], keys: Keys
) -> None:
    base, port = served
    s = _connect(port)
    s.sendall(
        b"POST /api/pose-generator/projects HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + keys.user.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    )
    answer = b""
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 8.0:
            if not answer:
                # One byte, then listen for half a second: the answer is read before the next
                # byte goes out (a byte sent after the server closed would make its kernel
                # reset the connection, which can discard the 408 before it is read).
                try:
                    s.send(b" ")
                except OSError:
                    break
            s.settimeout(0.5)
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    finally:
        s.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"request-timeout" in answer and b"application/problem+json" in answer
    assert time.monotonic() - t0 < 8.0
    assert _healthy(base) < 3.0


def test_connections_past_the_ceiling_are_dropped_at_once(
    settings: Settings, engine: Engine
) -> None:
    s = settings.model_copy(
        update={"http_max_connections": 16, "http_header_timeout_seconds": 30.0}
    )
    with live_server(create_app(s, engine), s) as (base, port):
        held = [_connect(port) for _ in range(16)]
        extra = [_connect(port) for _ in range(4)]
        try:
            assert all(_closed_within(x, 4.0) for x in extra)
            assert not any(_closed_within(h, 0.05) for h in held[:3])
        finally:
            for x in held + extra:
                x.close()
        time.sleep(0.2)
        assert _healthy(base) < 3.0


def test_request_cap_answers_503_but_lets_event_streams_through(
    settings: Settings, engine: Engine, keys: Keys
) -> None:
    s = settings.model_copy(update={"http_max_requests": 2, "http_body_timeout_seconds": 30.0})
    with live_server(create_app(s, engine), s) as (base, port):
        with httpx.Client(timeout=10) as c:
            auth = {"Authorization": f"Bearer {keys.user}"}
            project = c.post(f"{base}/projects", json={"name": "p"}, headers=auth).json()["id"]
            gen = c.post(
                f"{base}/generations",
                json={"projectId": project, "textPrompt": "a dancer"},
                headers=auth,
            ).json()["id"]
        # Two requests waiting for their bodies fill the cap.
        holders = [_connect(port) for _ in range(2)]
        for h in holders:
            h.sendall(
                b"POST /api/pose-generator/projects HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + keys.user.encode() + b"\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            )
        time.sleep(0.3)
        try:
            with httpx.Client(timeout=10) as c:
                busy = c.get(f"{base}/generations", headers=auth)
                assert problem_of(busy, 503)["kind"] == "server-busy"
                assert busy.headers["retry-after"] == "1"
                with c.stream("GET", f"{base}/generations/{gen}/events", headers=auth) as r:
                    assert r.status_code == 200
                    assert r.headers["content-type"].startswith("text/event-stream")
        finally:
            for h in holders:
                h.close()
        time.sleep(0.3)
        with httpx.Client(timeout=10) as c:
            assert c.get(f"{base}/generations", headers=auth).status_code == 200


def test_open_event_streams_are_capped_per_user(
    settings: Settings, engine: Engine, keys: Keys
) -> None:
    s = settings.model_copy(update={"sse_max_streams_per_user": 2})
    with live_server(create_app(s, engine), s) as (base, _), httpx.Client(timeout=10) as c:
        auth = {"Authorization": f"Bearer {keys.user}"}
        admin = {"Authorization": f"Bearer {keys.admin}"}
        project = c.post(f"{base}/projects", json={"name": "p"}, headers=auth).json()["id"]
        gen = c.post(
            f"{base}/generations",
            json={"projectId": project, "textPrompt": "a dancer"},
            headers=auth,
        ).json()["id"]
        url = f"{base}/generations/{gen}/events"
        first = c.stream("GET", url, headers=auth)
        second = c.stream("GET", url, headers=auth)
        with first as r1, second as r2:
            assert r1.status_code == 200 and r2.status_code == 200
            third = c.get(url, headers=auth)
            assert problem_of(third, 429)["kind"] == "too-many-streams"
            assert int(third.headers["retry-after"]) >= 1
            with c.stream("GET", url, headers=admin) as other_user:
                assert other_user.status_code == 200
        # Closed streams give their slots back.
        deadline = time.monotonic() + 5
        while True:
            with c.stream("GET", url, headers=auth) as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline, "slots were not released"
            time.sleep(0.1)


@pytest.mark.parametrize("access_log", [True, False])
def test_access_log_follows_its_setting(
    settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture, access_log: bool
) -> None:
    """``POSEGEN_HTTP_ACCESS_LOG``: one uvicorn access line per request, or none when off."""
    configured = settings.model_copy(update={"http_access_log": access_log})
    caplog.set_level("INFO", logger="uvicorn.access")
    with live_server(create_app(configured, engine), configured) as (base, _port):
        _healthy(base)
        _healthy(base)
    lines = [
        r for r in caplog.records if r.name == "uvicorn.access" and "/healthz" in r.getMessage()
    ]
    assert len(lines) == (2 if access_log else 0)
