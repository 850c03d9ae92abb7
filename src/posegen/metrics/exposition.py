"""Prometheus exposition: the shared series of ``prom.py`` plus values read at scrape time.

Counters and histograms that code increments live in the default registry (``prom.py``). What is
better read when Prometheus asks — queue depth and lag from the database, the connection pool,
the map cache's counters — comes from collectors bound to one process's engine and cache. Each
process (API replica, worker) builds one registry with :func:`build_registry` and serves it: the
API at ``/metrics``, a worker on ``posegen worker --metrics-port`` via :func:`serve`.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    disable_created_metrics,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import QueuePool

from posegen.exceptions import ConfigError, PosegenError
from posegen.metrics.summary import queue_health
from posegen.metrics.ttlcache import TTLCache

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class _Forward(Collector):
    """Everything in the default registry (``prom.py``'s series, process and GC metrics)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


class QueueCollector(Collector):
    """Queue depth, lag and oldest pending age, queried at scrape time (partial indexes)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("posegen_queue_scrape_ok", "1 if the queue figures could be read")
        try:
            q = queue_health(self._engine)
        except (PosegenError, SQLAlchemyError) as exc:
            # A scrape must not fail because the database is down: say so as a value instead.
            log.warning("queue metrics unavailable", extra={"error": str(exc)})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily(
            "posegen_queue_depth", "Generations waiting or running", labels=["status"]
        )
        depth.add_metric(["pending"], q["pending"])
        depth.add_metric(["processing"], q["processing"])
        yield depth
        yield GaugeMetricFamily(
            "posegen_queue_lag_seconds",
            "How long the longest-waiting runnable generation has waited past its run_after",
            value=q["lagSeconds"],
        )
        yield GaugeMetricFamily(
            "posegen_queue_oldest_pending_age_seconds",
            "Age of the oldest pending generation (0 when none)",
            value=q["oldestPendingAgeSeconds"] or 0.0,
        )


class PoolCollector(Collector):
    """This process's SQLAlchemy connection pool: connections in use, idle, and the cap."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        pool = self._engine.pool
        if not isinstance(pool, QueuePool):
            return
        used = GaugeMetricFamily(
            "posegen_db_pool_connections", "Pooled connections by state", labels=["state"]
        )
        used.add_metric(["checked_out"], pool.checkedout())
        used.add_metric(["idle"], pool.checkedin())
        yield used
        # size + max_overflow: past this, callers wait up to POSEGEN_DB_POOL_TIMEOUT_SECONDS.
        yield GaugeMetricFamily(
            "posegen_db_pool_capacity",
            "Most connections this process may open",
            value=pool.size() + max(0, getattr(pool, "_max_overflow", 0)),
        )


#: MapCache.stats() keys -> (series, label value); errors_<kind> are handled apart.
_MAP_COUNTERS: dict[str, tuple[str, str | None]] = {
    "memory_hits": ("posegen_map_cache_hits", "memory"),
    "disk_hits": ("posegen_map_cache_hits", "disk"),
    "misses": ("posegen_map_cache_misses", None),
    "origin_fetches": ("posegen_map_cache_origin_fetches", None),
    "coalesced": ("posegen_map_cache_coalesced", None),
    "bytes_fetched": ("posegen_map_cache_fetched_bytes", None),
}
_MAP_HELP = {
    "posegen_map_cache_hits": "Pose-map loads served from a cache tier",
    "posegen_map_cache_misses": "Pose-map loads that found no cached map",
    "posegen_map_cache_origin_fetches": "Pose maps fetched from their origin",
    "posegen_map_cache_coalesced": "Loads that waited for another flight instead of fetching",
    "posegen_map_cache_fetched_bytes": "Bytes fetched from map origins",
    "posegen_map_cache_errors": "Pose-map loads that failed, by error kind",
}


class MapCacheCollector(Collector):
    """The map cache's counters (``MapCache.stats()``) as Prometheus counters."""

    def __init__(self, stats: Callable[[], Mapping[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        families: dict[str, CounterMetricFamily] = {}

        def family(name: str, labels: list[str]) -> CounterMetricFamily:
            if name not in families:
                families[name] = CounterMetricFamily(name, _MAP_HELP[name], labels=labels)
            return families[name]

        for key, (name, label) in _MAP_COUNTERS.items():
            value = stats.get(key, 0)
            if label is None:
                family(name, []).add_metric([], value)
            else:
                family(name, ["tier"]).add_metric([label], value)
        errors = family("posegen_map_cache_errors", ["kind"])
        for key, value in sorted(stats.items()):
            if key.startswith("errors_"):
                errors.add_metric([key.removeprefix("errors_")], value)
        yield from families.values()


class MetricsCacheCollector(Collector):
    """How the metrics endpoints' TTL cache answered: hits, computations, coalesced waits."""

    def __init__(self, cache: TTLCache) -> None:
        self._cache = cache

    def collect(self) -> Iterator[Metric]:
        c = CounterMetricFamily(
            "posegen_metrics_cache_requests", "Metrics endpoint cache outcomes", labels=["outcome"]
        )
        s = self._cache.stats
        c.add_metric(["hit"], s.hits)
        c.add_metric(["computed"], s.computations)
        c.add_metric(["coalesced"], s.coalesced)
        yield c


def build_registry(
    engine: Engine | None = None,
    *,
    queue: bool = False,
    map_cache_stats: Callable[[], Mapping[str, int]] | None = None,
    metrics_cache: TTLCache | None = None,
) -> CollectorRegistry:
    """One process's registry: the shared series plus its pool, optionally queue and caches.

    ``queue`` is for API replicas: queue depth is one global value, read from the database, and
    workers leave it out so it is not exported once per worker host.
    """
    # A ``*_created`` gauge per counter doubles the series and no dashboard here reads them.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several processes behind one port (``posegen serve --workers N``): prometheus-client
        # keeps each process's values in files there, and this sums them at scrape time.
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Forward())
    if engine is not None:
        registry.register(PoolCollector(engine))
        if queue:
            registry.register(QueueCollector(engine))
    if map_cache_stats is not None:
        registry.register(MapCacheCollector(map_cache_stats))
    if metrics_cache is not None:
        registry.register(MetricsCacheCollector(metrics_cache))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition of ``registry`` (content type :data:`CONTENT_TYPE`)."""
    return generate_latest(registry)


def serve(
    port: int, registry: CollectorRegistry, addr: str = "127.0.0.1", token: str | None = None
) -> Any:
    """Serve ``registry`` on ``addr:port`` in a daemon thread (worker processes).

    With ``token`` (``POSEGEN_METRICS_TOKEN``) every scrape must send ``Authorization: Bearer
    <token>``, as the API's ``/metrics`` asks. Without one the port is served only on a loopback
    address: queue depth, error kinds and pool figures are not for the whole network.
    """
    if not token and not is_loopback(addr):
        raise ConfigError(
            f"--metrics-port on {addr} needs POSEGEN_METRICS_TOKEN (or a loopback POSEGEN_API_HOST)"
        )
    app = make_wsgi_app(registry)
    server = make_server(
        addr, port, _bearer_only(app, token) if token else app, _ThreadingServer, _QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


def is_loopback(addr: str) -> bool:
    """Whether ``addr`` (a bind address) is reachable only from this host."""
    if addr == "localhost":
        return True
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False


def _bearer_only(app: Any, token: str) -> Any:
    expected = f"Bearer {token}".encode()

    def guarded(environ: dict[str, Any], start_response: Any) -> Any:
        sent = environ.get("HTTP_AUTHORIZATION", "").encode()
        if not hmac.compare_digest(sent, expected):
            start_response(
                "401 Unauthorized",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("WWW-Authenticate", "Bearer"),
                    ("X-Content-Type-Options", "nosniff"),
                ],
            )
            return [b"metrics need the metrics token\n"]
        return app(environ, start_response)

    return guarded


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        pass
