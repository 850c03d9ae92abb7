"""The map cache's hit rate for the overview, from a ``MapCache.stats()`` mapping.

Each process keeps its own counters and adds them to a small file in the cache folder, so
``MapCache.host_stats()`` covers every process on this host that shares the cache (the API's
map previews and the workers' maps). Other hosts export theirs on their Prometheus port.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def map_cache_figures(stats: Mapping[str, int] | None) -> dict[str, Any] | None:
    """Hits, misses, coalesced waits, errors and the hit rate (None before the first load)."""
    if stats is None:
        return None
    hits = int(stats.get("memory_hits", 0)) + int(stats.get("disk_hits", 0))
    misses = int(stats.get("misses", 0))
    coalesced = int(stats.get("coalesced", 0))
    errors = sum(int(v) for k, v in stats.items() if k.startswith("errors_"))
    # A coalesced load waited for another flight instead of fetching: it is served without a
    # fetch of its own, so it counts as a hit.
    served = hits + coalesced
    lookups = served + misses
    return {
        "hits": hits,
        "misses": misses,
        "coalesced": coalesced,
        "originFetches": int(stats.get("origin_fetches", 0)),
        "errors": errors,
        "lookups": lookups,
        "hitRate": round(served / lookups, 4) if lookups else None,
    }
