"""Prometheus series shared by the API, workers and the map cache.

Defined once here so every process exports the same names. Workers serve theirs on
``posegen worker --metrics-port``; the API serves ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CLAIMS = Counter("posegen_claims_total", "Generations claimed by workers")
COMPLETIONS = Counter(
    "posegen_completions_total", "Generations that reached a terminal state", ["status"]
)
RETRIES = Counter("posegen_retries_total", "Generations sent back to pending for a retry")
RECOVERIES = Counter(
    "posegen_recoveries_total",
    "Expired leases handled by the recovery loop",
    ["outcome"],  # requeued | failed
)
LEASE_LOSSES = Counter(
    "posegen_lease_losses_total", "Fenced worker writes that found the lease taken away"
)
POSES = Counter("posegen_poses_total", "Pose variations written", ["status"])
GENERATOR_SECONDS = Histogram(
    "posegen_generator_seconds",
    "Time spent in the generator backend per pose",
    ["backend"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
POSE_OVERHEAD_SECONDS = Histogram(
    "posegen_pose_overhead_seconds",
    "Per-pose time outside the backend (maps, storage, database)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
CREDITS = Counter(
    "posegen_credits_total",
    "Credits charged at submit and refunded when generations ended short",
    ["kind"],  # charged | refunded
)
INSUFFICIENT_CREDITS = Counter(
    "posegen_insufficient_credits_total", "Submits refused (402) for want of credits"
)
QUOTA_REFUSALS = Counter(
    "posegen_quota_refusals_total", "Submits refused (429) because a daily pose quota was used up"
)
WORKER_IN_FLIGHT = Gauge("posegen_worker_in_flight", "Generations running in this worker")
WORKER_PAUSED = Gauge(
    "posegen_worker_paused", "1 while this worker claims nothing because its backend is down"
)
BACKEND_OUTAGES = Counter(
    "posegen_backend_outages_total",
    "Generations given back without spending an attempt because the backend was unavailable",
)
HTTP_REQUEST_SECONDS = Histogram(
    "posegen_http_request_duration_seconds",
    # Until the response headers are sent: an SSE stream would otherwise count its whole life.
    "API latency until the response starts, by route template",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
