"""Settings from ``POSEGEN_*`` environment variables and an optional ``.env`` file.

Built by :func:`load_settings`, never at import time, and passed down explicitly. Every field is
documented in the README's configuration table; names are part of the interface.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from posegen.exceptions import ConfigError

Backend = Literal["posemap", "diffusers", "comfyui", "noop"]


class Settings(BaseSettings):
    """Effective configuration of one posegen process."""

    model_config = SettingsConfigDict(
        env_prefix="POSEGEN_", env_file=".env", extra="ignore", frozen=True
    )

    # --- storage and database -------------------------------------------------------------
    data_dir: Path = Path("./posegen-data")
    database_url: str | None = None
    #: The seed tuned its pool to min 2 / max 10 connections; SQLAlchemy says size + overflow.
    db_pool_size: int = Field(default=5, ge=1, le=200)
    db_max_overflow: int = Field(default=5, ge=0, le=200)
    db_pool_timeout_seconds: float = Field(default=30.0, gt=0)
    db_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    db_echo: bool = False

    # --- queue, workers, recovery ---------------------------------------------------------
    lease_seconds: float = Field(default=60.0, gt=0)
    recovery_interval_seconds: float = Field(default=30.0, gt=0)
    recovery_batch_size: int = Field(default=100, ge=1)
    #: How often each worker probes its peers' liveness locks (0 = off: leases only).
    dead_worker_check_seconds: float = Field(default=1.0, ge=0)
    max_attempts: int = Field(default=3, ge=1)
    #: Hard deadline of one generation = base + per_pose * total poses.
    deadline_base_seconds: float = Field(default=300.0, gt=0)
    deadline_per_pose_seconds: float = Field(default=120.0, gt=0)
    retry_backoff_base_seconds: float = Field(default=5.0, ge=0)
    retry_backoff_max_seconds: float = Field(default=600.0, ge=0)
    poll_interval_seconds: float = Field(default=1.0, gt=0)
    #: False = poll only (for PgBouncer in transaction mode, where LISTEN does not work).
    listen_notify: bool = True
    worker_concurrency: int = Field(default=2, ge=1, le=256)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    worker_stale_seconds: float = Field(default=180.0, gt=0)
    backend: Backend = "posemap"
    #: Circuit breaker: consecutive backend outages before the worker stops claiming, then the
    #: first and the longest wait between probes of the backend while paused.
    breaker_threshold: int = Field(default=3, ge=1)
    breaker_probe_min_seconds: float = Field(default=1.0, gt=0)
    breaker_probe_max_seconds: float = Field(default=60.0, gt=0)
    #: A request naming a backend no worker has served for this long is refused.
    backend_seen_seconds: float = Field(default=3600.0, gt=0)
    generator_timeout_seconds: float = Field(default=600.0, gt=0)
    #: Seconds the ``noop`` backend (load tests and benchmarks only) sleeps per pose.
    noop_pose_seconds: float = Field(default=0.0, ge=0)

    # --- ControlNet maps and safe fetching ------------------------------------------------
    uploads_dir: Path | None = None
    cache_dir: Path | None = None
    results_dir: Path | None = None
    fetch_allowlist: str = ""
    fetch_timeout_seconds: float = Field(default=10.0, gt=0)
    fetch_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    fetch_max_redirects: int = Field(default=5, ge=0)
    image_max_pixels: int = Field(default=4096 * 4096, ge=1)
    map_cache_max_bytes: int = Field(default=1024**3, ge=0)
    map_cache_memory_items: int = Field(default=64, ge=0)
    map_failure_ttl_seconds: float = Field(default=60.0, ge=0)
    default_width: int = Field(default=512, ge=64, le=4096)
    default_height: int = Field(default=512, ge=64, le=4096)

    # --- generator backends ---------------------------------------------------------------
    diffusers_model_path: Path | None = None
    diffusers_controlnet_path: Path | None = None
    #: Diffusers-format config folders for single-file checkpoints (no weights needed).
    diffusers_config_path: Path | None = None
    diffusers_controlnet_config_path: Path | None = None
    diffusers_variant: Literal["sd15", "sdxl"] = "sd15"
    diffusers_steps: int = Field(default=25, ge=1)
    diffusers_guidance_scale: float = 7.5
    diffusers_device: str | None = None
    diffusers_max_batch: int = Field(default=4, ge=1)
    #: img2img strength when the project has a subject image (1.0 = ignore the subject).
    diffusers_strength: float = Field(default=0.8, gt=0, le=1)
    comfyui_url: str | None = None
    comfyui_workflow_path: Path | None = None
    comfyui_timeout_seconds: float = Field(default=300.0, gt=0)
    #: Model file names the default ComfyUI workflow asks the server for.
    comfyui_checkpoint: str = "v1-5-pruned-emaonly.safetensors"
    comfyui_controlnet: str = "control_v11p_sd15_openpose.pth"
    comfyui_steps: int = Field(default=25, ge=1)
    comfyui_denoise: float = Field(default=0.8, gt=0, le=1)
    #: The ComfyUI workflow that repaints a background (None: the shipped comfyui_inpaint.json).
    comfyui_inpaint_workflow_path: Path | None = None
    #: Background repaint from a prompt (diffusers and comfyui): how much of the old background
    #: is re-noised (1.0 = painted anew) and the steps (None: the backend's own steps setting).
    inpaint_strength: float = Field(default=1.0, gt=0, le=1)
    inpaint_steps: int | None = Field(default=None, ge=1)

    # --- HTTP API -------------------------------------------------------------------------
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    cors_origins: str = ""
    max_body_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    upload_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    #: Total bytes of one user's stored uploads (each distinct image counted once).
    user_upload_quota_bytes: int = Field(default=2 * 1024**3, ge=0)
    #: Uploads decoded at once per process (bounds the memory of parallel uploads).
    upload_decode_concurrency: int = Field(default=2, ge=1)
    submissions_per_minute: int = Field(default=10, ge=1)
    max_active_generations: int = Field(default=3, ge=1)
    max_poses_per_request: int = Field(default=200, ge=1)
    max_total_poses: int = Field(default=500, ge=1)
    max_variations: int = Field(default=10, ge=1)
    #: Per-user caps checked when a project is created / a generation is submitted.
    max_projects_per_user: int = Field(default=100, ge=1)
    max_result_bytes_per_user: int = Field(default=10 * 1024**3, ge=1)
    #: Credits one pose costs, charged at submit (0: generating is free and nobody is charged).
    credits_per_pose: int = Field(default=0, ge=0)
    #: Surcharges for paid extras, per pose (``posegen.credits.pricing``): each export format
    #: asked for at submit, and a background change.
    credits_per_export: int = Field(default=0, ge=0)
    credits_background_surcharge: int = Field(default=0, ge=0)
    #: Quota plans count poses per day in this IANA time zone (a day starts at its midnight).
    quota_timezone: str = "UTC"
    #: Added to the priority of a quota user's generations (claimed first: higher is sooner).
    quota_priority: int = Field(default=10, ge=0, le=1000)
    #: Size estimate of one stored result: width x height x this (PNG), plus a thumbnail.
    result_bytes_per_pixel: float = Field(default=3.0, gt=0)
    #: The HTTP server: connections it holds (idle ones included; capped below the descriptor
    #: limit), requests it runs at once (event streams not counted), and its deadlines.
    http_max_connections: int = Field(default=2048, ge=16)
    http_max_requests: int = Field(default=256, ge=1)
    http_keepalive_seconds: float = Field(default=5.0, gt=0)
    http_header_timeout_seconds: float = Field(default=10.0, gt=0)
    http_body_timeout_seconds: float = Field(default=60.0, gt=0)
    #: uvicorn's access log, one line per request: about a third of the server's CPU on a
    #: cached read (bench/api.py), so a busy deployment may turn it off.
    http_access_log: bool = True
    #: Threads that run an API process's synchronous routes and dependencies (anyio's default
    #: thread limiter; event streams never take one of these).
    http_threads: int = Field(default=40, ge=1, le=1000)
    #: Event streams one user may hold open at once (429 beyond).
    sse_max_streams_per_user: int = Field(default=8, ge=1)
    #: Threads reserved for opening event streams (the visibility and replay check): a burst of
    #: stream opens queues here, not in front of the other routes.
    sse_open_threads: int = Field(default=4, ge=1, le=100)
    metrics_cache_ttl_seconds: float = Field(default=60.0, ge=0)
    #: How long an API process trusts a key it looked up (a revocation elsewhere waits this long).
    auth_cache_seconds: float = Field(default=5.0, ge=0)
    #: An event stream closes after this long; EventSource clients resume with Last-Event-ID.
    sse_max_seconds: float = Field(default=300.0, gt=0)
    #: ``shared``: one event feed per API process serves every stream (LISTEN on PostgreSQL,
    #: one poller on SQLite); ``poll``: each stream polls on its own (the old way, kept for
    #: the benchmark's comparison).
    sse_feed: Literal["shared", "poll"] = "shared"
    #: How often the shared feed looks for new events when it cannot LISTEN (SQLite; PostgreSQL
    #: with LISTEN off or down): one read per look for all streams of the process; on SQLite a
    #: look that finds no commit since the last one reads nothing.
    sse_poll_seconds: float = Field(default=0.05, gt=0, le=10)
    #: Bearer token Prometheus sends to scrape ``/metrics`` (admin API keys work too).
    metrics_token: SecretStr | None = None
    session_secret: SecretStr | None = None
    #: Serve Swagger UI at ``/docs``; off by default because it loads its assets from a CDN.
    api_docs: bool = False
    #: Shared secret of the payment provider's webhook (HMAC-SHA256 over the body); unset:
    #: the webhook answers 404.
    payment_webhook_secret: SecretStr | None = None
    #: A webhook event whose signed timestamp is further than this from now is refused.
    payment_webhook_tolerance_seconds: int = Field(default=300, ge=1)

    # --- logs and traces ------------------------------------------------------------------
    #: ``auto``: text on a terminal, JSON lines otherwise.
    log_format: Literal["auto", "json", "text"] = "auto"
    #: Append every finished span to this file as JSON lines (debugging, tests); OTLP export
    #: is switched on by the standard ``OTEL_EXPORTER_OTLP_ENDPOINT``.
    trace_file: Path | None = None

    # --- object storage (results in an S3-compatible store) -------------------------------
    #: ``local``: results on this host's disk; ``s3``: in the bucket below (every host agrees).
    storage: Literal["local", "s3"] = "local"
    #: Empty = AWS's own endpoint for the region; set it for MinIO, R2, Ceph, SeaweedFS...
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_bucket: str = ""
    #: Prepended to every key (``posegen/`` keeps posegen's objects in one folder of a bucket).
    s3_prefix: str = ""
    #: Path-style URLs (``endpoint/bucket/key``): most self-hosted stores need them.
    s3_path_style: bool = False
    #: Server-side encryption asked for on every write: empty (the bucket's default),
    #: ``AES256`` or ``aws:kms``.
    s3_sse: Literal["", "AES256", "aws:kms"] = ""
    #: Seconds one S3 call may take before it is abandoned (connect and read each).
    s3_timeout_seconds: float = Field(default=10.0, gt=0)
    #: ``stream``: the API reads the object and sends it; ``redirect``: 307 to a presigned URL.
    s3_download: Literal["stream", "redirect"] = "stream"
    #: Lifetime of a presigned download URL.
    s3_presign_seconds: int = Field(default=300, ge=1, le=7 * 24 * 3600)

    # --- exports --------------------------------------------------------------------------
    #: Formats added to (or replacing) the built-in export table: JSON text (a list of format
    #: objects) or the path of a JSON file; checked by ``posegen.exports.load_formats``.
    export_formats: str = ""
    # --- vision (poses and masks from photos; a helper process, `make install-vision`) ----
    #: The vision environment's Python; unset: ``.venv-vision/bin/python`` in the working
    #: directory or beside the source tree, if there.
    vision_python: Path | None = None
    #: Seconds one helper request may take (the helper is killed and restarted past it).
    vision_timeout_seconds: float = Field(default=30.0, gt=0)
    #: Helper processes per API or worker process, each serving one request at a time (so
    #: this many photos are analysed at once; each helper holds its own copy of the models).
    vision_helpers: int = Field(default=1, ge=1, le=64)
    #: Photos are downsized to this longest side before the models see them (they work at
    #: 256 px; keypoints are normalised and masks scaled back, so nothing is lost).
    vision_max_side: int = Field(default=1024, ge=64, le=8192)
    #: Detect the person in a project's subject upload once, after the upload is answered.
    vision_detect_subjects: bool = True
    # --- retention (``posegen prune``; every limit off by default: nothing is deleted) ----
    #: Days after a generation ended before its events and log lines are deleted (0 = never).
    retention_events_days: float = Field(default=0, ge=0)
    #: Days after a generation ended before it is deleted with its results, unless its owner
    #: keeps it (``PUT /generations/{id}/keep``) (0 = never).
    retention_results_days: float = Field(default=0, ge=0)
    #: Days an upload no project or pose refers to is kept before it is deleted (0 = never).
    retention_uploads_days: float = Field(default=0, ge=0)
    #: Stored files no row names (a crash between the write and its row) are deleted once
    #: older than this; long enough that a write in flight always has its row first.
    orphan_grace_seconds: float = Field(default=86400.0, ge=60)
    #: How often a worker runs the prune in its recovery loop (0 = only ``posegen prune``).
    prune_interval_seconds: float = Field(default=3600.0, ge=0)
    #: Rows per prune transaction: small, so no lock is held for long.
    prune_batch_size: int = Field(default=500, ge=1, le=10000)

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = urlsplit(value).scheme.split("+")[0]
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError(
                f"unsupported database URL scheme {scheme!r}: use sqlite:///PATH or postgresql://..."
            )
        return value

    @field_validator("quota_timezone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name like Europe/Paris)"
            ) from exc
        return value

    @field_validator(
        "comfyui_workflow_path",
        "comfyui_inpaint_workflow_path",
        "inpaint_steps",
        "vision_python",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # An empty variable would otherwise become Path(".") and fail with "Is a directory".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("fetch_allowlist")
    @classmethod
    def _check_allowlist(cls, value: str) -> str:
        for item in _split(value):
            if "/" in item:
                try:
                    ipaddress.ip_network(item, strict=False)
                except ValueError as exc:
                    raise ValueError(f"bad CIDR in allow-list: {item!r}") from exc
        return value

    # --- derived values -------------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'posegen.db').resolve()}"

    @property
    def serving_backend(self) -> str:
        """The backend generations are bound to by default and this worker claims for.

        ``noop`` (load tests, benchmarks) stands in for the embedded ``posemap`` backend, so a
        no-op worker drains what a default deployment queues.
        """
        return "posemap" if self.backend == "noop" else self.backend

    @property
    def is_sqlite(self) -> bool:
        return self.effective_database_url.startswith("sqlite")

    @property
    def effective_uploads_dir(self) -> Path:
        return self.uploads_dir or self.data_dir / "uploads"

    @property
    def effective_cache_dir(self) -> Path:
        return self.cache_dir or self.data_dir / "cache"

    @property
    def effective_results_dir(self) -> Path:
        return self.results_dir or self.data_dir / "results"

    @property
    def fetch_allowlist_items(self) -> list[str]:
        return _split(self.fetch_allowlist)

    @property
    def cors_origin_list(self) -> list[str]:
        return _split(self.cors_origins)

    def deadline_seconds(self, total_poses: int) -> float:
        return self.deadline_base_seconds + self.deadline_per_pose_seconds * max(total_poses, 1)

    def masked(self) -> dict[str, Any]:
        """Effective settings as plain values, secrets and URL passwords masked."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "***" if value.get_secret_value() else ""
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        out["database_url"] = mask_url(self.effective_database_url)
        if self.comfyui_url:
            out["comfyui_url"] = mask_url(self.comfyui_url)
        return out


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def mask_url(url: str) -> str:
    """Hide the password of a URL (``postgresql://u:***@host/db``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (and ``.env``); keyword overrides win."""
    try:
        return Settings(**overrides)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise ConfigError(f"invalid settings: {_one_line(exc)}") from exc


def _one_line(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = []
        for err in errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            parts.append(f"POSEGEN_{loc.upper()}: {err.get('msg')}" if loc else str(err.get("msg")))
        return "; ".join(parts)
    return str(exc).splitlines()[0]
