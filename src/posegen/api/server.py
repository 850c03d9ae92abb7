"""The HTTP server (uvicorn) with the limits that keep idle or slow clients from exhausting it.

uvicorn alone closes idle keep-alive connections, but a client that trickles the bytes of a
request's headers resets that timer with every byte and holds its socket forever; at the
descriptor limit nobody is served. So posegen runs uvicorn with:

- a connection ceiling (``limit_concurrency``, kept under the process's descriptor limit):
  connections past it are closed as soon as they are accepted;
- a header deadline, in the protocol class below: from a connection's first byte (or the end of
  its previous response) the request line and headers must be complete within
  ``http_header_timeout_seconds``, or the connection is closed;
- the keep-alive timeout for idle connections between requests.

The body deadline and the cap on requests running at once are ASGI middleware
(:mod:`posegen.api.limits`), so they hold whichever protocol implementation runs.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from posegen.config import Settings

log = logging.getLogger(__name__)

#: Descriptors kept free for the database pool, result files, logs and the listening socket.
RESERVED_DESCRIPTORS = 128


class ServerConfig(uvicorn.Config):
    """uvicorn's config plus the header deadline (an attribute, so it pickles to workers)."""

    def __init__(self, *args: Any, header_timeout: float = 10.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout


class _HeaderDeadline(asyncio.Protocol):
    """Close a connection whose request headers do not arrive in time.

    Works on both of uvicorn's HTTP implementations through what they share: a new
    request/response ``cycle`` is made when a request's headers are complete.
    """

    transport: asyncio.Transport
    cycle: Any
    connections: set[Any]
    loop: asyncio.AbstractEventLoop
    limit_concurrency: int | None

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)  # type: ignore[call-arg]
        self._header_timeout = float(getattr(config, "header_timeout", 10.0))
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        limit = self.limit_concurrency
        if limit is not None and len(self.connections) > limit:
            # Past the ceiling: give the descriptor back now rather than hold it until a
            # request arrives to be refused.
            log.warning("connection refused: %d open connections", len(self.connections) - 1)
            self.transport.close()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before:
            self._disarm()  # headers complete: the app (and the body deadline) take over

    def on_response_complete(self) -> None:
        before = self.cycle
        super().on_response_complete()  # type: ignore[misc]
        # Arm for the next request unless a pipelined one already started.
        if self.cycle is before and not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self._header_timeout, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        in_request = self.cycle is not None and not self.cycle.response_complete
        if not in_request and not self.transport.is_closing():
            self.transport.close()


class H11DeadlineProtocol(_HeaderDeadline, H11Protocol):
    """uvicorn's h11 protocol with the header deadline."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is optional for uvicorn
    DeadlineProtocol: type[asyncio.Protocol] = H11DeadlineProtocol
else:

    class HttpToolsDeadlineProtocol(_HeaderDeadline, HttpToolsProtocol):
        """uvicorn's httptools protocol with the header deadline."""

    DeadlineProtocol = HttpToolsDeadlineProtocol


def max_connections(settings: Settings) -> int:
    """``http_max_connections``, lowered to fit the descriptor limit this process has."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = settings.http_max_connections
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = max(16, int(soft) - RESERVED_DESCRIPTORS)
    if wanted > room:
        log.warning(
            "POSEGEN_HTTP_MAX_CONNECTIONS=%d is over the descriptor limit (%d); using %d",
            wanted,
            soft,
            room,
        )
    return min(wanted, room)


def make_config(app: Any, settings: Settings, host: str, port: int, **kwargs: Any) -> ServerConfig:
    """The server config ``posegen serve`` and ``posegen up`` run (``app``: an ASGI app, or an
    import string with ``factory=True`` for several processes)."""
    return ServerConfig(
        app,
        host=host,
        port=port,
        http=DeadlineProtocol,
        limit_concurrency=max_connections(settings),
        timeout_keep_alive=max(1, round(settings.http_keepalive_seconds)),
        header_timeout=settings.http_header_timeout_seconds,
        log_config=None,
        **{"access_log": settings.http_access_log, **kwargs},
    )


#: Allocations between two young-generation collections in a serving process (Python's
#: default is 700). See :func:`tune_collector`.
GC_YOUNG_THRESHOLD = 10_000


def tune_collector() -> None:
    """Set the garbage collector up for a long-running API process (call once its app is
    built, in the process that serves).

    - What start-up made (modules, the app, its routes and models; ~185,000 objects) leaves the
      collector's view (``gc.freeze``): full collections walk only what requests made since.
      What is garbage now is collected first, so nothing unreachable is kept forever.
    - Young collections run every :data:`GC_YOUNG_THRESHOLD` allocations instead of 700. An open
      event stream waits on a fresh future between deliveries (50-200 ms); at the default, those
      outlived two young collections, were promoted to the oldest generation by the thousands a
      second and set off a full collection every few seconds.

    A full collection walks every tracked object (~200 per open stream) while the process serves
    nothing: at 2,000 streams each took 90-330 ms (``gc.callbacks`` in bench/sse.py's API
    process), long enough to put the delivery p99 at 340-390 ms on SQLite; with both, one in ten
    seconds or none, and the p99 at 170-190 ms (docs/benchmarks.md).
    """
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def run(config: ServerConfig) -> None:
    """Run the server in this process, or ``config.workers`` processes sharing one socket
    (those call :func:`tune_collector` once their app is built)."""
    if config.workers > 1:
        from uvicorn.supervisors import Multiprocess

        sock = config.bind_socket()
        Multiprocess(config, sockets=[sock]).run()
        return
    tune_collector()
    uvicorn.Server(config).run()
