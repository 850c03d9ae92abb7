"""The main process's side of the vision helpers: a pool of ``POSEGEN_VISION_HELPERS``
long-lived helper processes per process, each started on first use, restarted when it dies,
killed when it overruns its timeout.

A helper (``helper_main.py``) runs under the vision environment's Python, found by
:func:`helper_python`, and answers one request at a time: a request takes an idle helper from
the pool (the lowest-numbered, so a second helper only starts once two requests overlap) and
waits at most ``POSEGEN_VISION_TIMEOUT_SECONDS`` for one to be free and as long again for its
answer. A helper that died between requests is replaced before the next one is sent; a request
whose helper dies under it is retried once on a new helper; a second death, or an overrun, is
:class:`VisionFailed`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import selectors
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

from posegen.config import Settings
from posegen.vision import wire
from posegen.vision.errors import INSTALL_HINT, VisionFailed, VisionUnavailable

log = logging.getLogger(__name__)

HELPER_SCRIPT = Path(__file__).with_name("helper_main.py")
VENV_NAME = ".venv-vision"
#: Loading mediapipe and answering the hello takes ~1 s; a loaded machine, several.
START_TIMEOUT_SECONDS = 60.0
_STDERR_TAIL = 2000


def helper_python(settings: Settings) -> Path | None:
    """The vision environment's Python: ``POSEGEN_VISION_PYTHON``, else ``.venv-vision`` in
    the working directory or beside the project's source tree; None when there is none."""
    if settings.vision_python is not None:
        return settings.vision_python if settings.vision_python.exists() else None
    roots = [Path.cwd(), Path(__file__).resolve().parents[3]]
    for root in roots:
        candidate = root / VENV_NAME / "bin" / "python"
        if candidate.exists():
            return candidate
    return None


def available(settings: Settings) -> bool:
    """Whether a vision environment is there (not whether it works: the first request tells)."""
    return helper_python(settings) is not None


def require(settings: Settings) -> None:
    """Refuse (503 ``vision-not-installed``) where there is no vision environment: what a
    request for work that needs it later (a background change) checks before it is queued."""
    if not available(settings):
        where = settings.vision_python or VENV_NAME
        raise VisionUnavailable(f"the vision models are not installed (no {where}); {INSTALL_HINT}")


class Helper:
    """One helper process and the lock its requests queue on."""

    def __init__(self, python: Path, timeout: float) -> None:
        self.python = python
        self.timeout = timeout
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._buffer = bytearray()
        self.versions: dict[str, str] = {}
        self.starts = 0
        #: Requests answered (ok or not) by this helper slot, over its restarts.
        self.requests = 0
        #: True from the moment a request is written until its answer is read.
        self.in_flight = False

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def call(self, header: dict[str, Any], payload: bytes = b"") -> tuple[dict[str, Any], bytes]:
        """Send one request and wait for its answer (``ok: false`` becomes VisionFailed).

        Requests queue for the helper at most one timeout long (then ``vision-busy``), so a
        burst cannot pile up threads waiting forever behind it."""
        if not self._lock.acquire(timeout=self.timeout):
            raise VisionFailed(
                f"the vision helper stayed busy for {self.timeout:g} s", kind="vision-busy"
            )
        try:
            for attempt in (1, 2):
                if self._proc is None or self._proc.poll() is not None:
                    self._start()
                try:
                    answer, data = self._exchange(header, payload, self.timeout)
                    self.requests += 1
                    break
                except VisionFailed as exc:
                    self._stop()
                    # A helper killed since the last request may not be reaped yet: one new
                    # helper, one more try. Not after an overrun (the request is the suspect),
                    # and a request that kills every helper fails on its second.
                    if exc.kind == "vision-timeout" or attempt == 2:
                        raise
                    log.warning("vision helper lost; starting another", extra={"error": str(exc)})
        finally:
            self._lock.release()
        if not answer.get("ok"):
            raise VisionFailed(f"the vision helper could not do that: {answer.get('error')}")
        return answer, data

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _start(self) -> None:
        self._stop()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GLOG_minloglevel": "2",
            "TF_CPP_MIN_LOG_LEVEL": "3",
            # One model at a time per helper: its own threads would fight the API's for cores.
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        }
        self._stderr = tempfile.TemporaryFile(prefix="posegen-vision-")
        try:
            # -I: the main environment's PYTHONPATH, user site and cwd stay out of it.
            self._proc = subprocess.Popen(
                [str(self.python), "-I", str(HELPER_SCRIPT)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=env,
                close_fds=True,
            )
        except OSError as exc:
            raise VisionUnavailable(
                f"cannot start the vision helper with {self.python} ({exc}); {INSTALL_HINT}"
            ) from exc
        self._buffer.clear()
        self.starts += 1
        try:
            hello, _ = self._read(time.monotonic() + max(self.timeout, START_TIMEOUT_SECONDS))
        except VisionFailed as exc:
            self._stop()
            raise VisionUnavailable(f"{exc.message}; {INSTALL_HINT}") from exc
        if not hello.get("ok"):
            self._stop()
            raise VisionUnavailable(
                f"the vision environment is broken ({hello.get('error')}); {INSTALL_HINT}"
            )
        self.versions = dict(hello.get("versions") or {})
        log.debug("vision helper started", extra={"pid": self._proc.pid, **self.versions})

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _exchange(
        self, header: dict[str, Any], payload: bytes, timeout: float
    ) -> tuple[dict[str, Any], bytes]:
        assert self._proc is not None and self._proc.stdin is not None
        deadline = time.monotonic() + timeout
        try:
            self._proc.stdin.write(wire.encode(header, payload))
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise VisionFailed(f"the vision helper stopped ({self._why()})") from exc
        self.in_flight = True
        try:
            return self._read(deadline)
        finally:
            self.in_flight = False

    def _read(self, deadline: float) -> tuple[dict[str, Any], bytes]:
        line = self._read_until_newline(deadline)
        try:
            header = json.loads(line)
            size = int(header.get("bytes", 0))
        except ValueError as exc:
            raise VisionFailed("the vision helper sent a broken frame") from exc
        return header, self._read_exact(size, deadline)

    def _read_until_newline(self, deadline: float) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > wire.MAX_HEADER:
                raise VisionFailed("the vision helper sent a broken frame")
            self._fill(deadline)

    def _read_exact(self, size: int, deadline: float) -> bytes:
        while len(self._buffer) < size:
            self._fill(deadline)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _fill(self, deadline: float) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise VisionFailed(
                    f"the vision helper took longer than {self.timeout:g} s; it was stopped",
                    kind="vision-timeout",
                )
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            raise VisionFailed(f"the vision helper stopped ({self._why()})")
        self._buffer.extend(chunk)

    def _why(self) -> str:
        proc = self._proc
        code = None if proc is None else proc.poll()
        if proc is not None and code is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = proc.wait(timeout=1)
        tail = ""
        if self._stderr is not None:
            with contextlib.suppress(OSError):
                self._stderr.seek(0, os.SEEK_END)
                self._stderr.seek(max(0, self._stderr.tell() - _STDERR_TAIL))
                lines = self._stderr.read().decode(errors="replace").strip().splitlines()
                tail = lines[-1] if lines else ""
        status = f"exit status {code}" if code is not None else "no answer"
        return f"{status}: {tail}" if tail else status


class HelperPool:
    """``size`` helpers; each request borrows an idle one for its whole exchange."""

    def __init__(self, python: Path, timeout: float, size: int) -> None:
        self.helpers = tuple(Helper(python, timeout) for _ in range(size))
        self._idle = list(self.helpers)
        self._free = threading.Condition()
        self._timeout = timeout

    @property
    def timeout(self) -> float:
        return self._timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self._timeout = seconds
        for helper in self.helpers:
            helper.timeout = seconds

    @property
    def pids(self) -> list[int]:
        """The running helpers' process ids."""
        return [h.pid for h in self.helpers if h.pid is not None]

    @property
    def starts(self) -> int:
        return sum(h.starts for h in self.helpers)

    @property
    def versions(self) -> dict[str, str]:
        return next((h.versions for h in self.helpers if h.versions), {})

    def call(self, header: dict[str, Any], payload: bytes = b"") -> tuple[dict[str, Any], bytes]:
        """Send one request to an idle helper and wait for its answer (see :meth:`Helper.call`);
        ``vision-busy`` when none came free within one timeout."""
        helper = self._borrow()
        try:
            return helper.call(header, payload)
        finally:
            with self._free:
                self._idle.append(helper)
                self._free.notify()

    def close(self) -> None:
        for helper in self.helpers:
            helper.close()

    def _borrow(self) -> Helper:
        with self._free:
            if not self._free.wait_for(lambda: bool(self._idle), timeout=self._timeout):
                raise VisionFailed(
                    f"every vision helper stayed busy for {self._timeout:g} s", kind="vision-busy"
                )
            # The lowest-numbered idle helper: a started one when the load allows it.
            helper = min(self._idle, key=self.helpers.index)
            self._idle.remove(helper)
            return helper


_pools: dict[tuple[str, float, int], HelperPool] = {}
_pools_lock = threading.Lock()


def helper_for(settings: Settings) -> HelperPool:
    """This process's helpers for these settings (created on first use, none started yet)."""
    python = helper_python(settings)
    if python is None:
        where = settings.vision_python or VENV_NAME
        raise VisionUnavailable(f"the vision models are not installed (no {where}); {INSTALL_HINT}")
    key = (str(python), settings.vision_timeout_seconds, settings.vision_helpers)
    # Process-wide on purpose: a fixed number of helpers (each a copy of the models) per process.
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = HelperPool(
                python, settings.vision_timeout_seconds, settings.vision_helpers
            )
        return pool


@atexit.register
def _close_all() -> None:
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()
