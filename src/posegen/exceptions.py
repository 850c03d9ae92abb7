"""The package's own errors.

Lower-layer errors (database driver, HTTP client, Pillow) are converted into these once, at the
edge where they happen (``raise ... from exc``). The API maps each ``kind`` to an HTTP status and a
``application/problem+json`` type in one exception handler; the CLI prints the message on one line.
"""

from __future__ import annotations


class PosegenError(Exception):
    """Base of every error posegen raises on purpose."""

    kind: str = "error"
    #: HTTP status the API answers with; core code never imports the web framework.
    http_status: int = 500

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if kind is not None:
            self.kind = kind


class ConfigError(PosegenError):
    kind = "config"
    http_status = 500


class DatabaseUnavailable(PosegenError):
    kind = "database-unavailable"
    http_status = 503


class MigrationError(PosegenError):
    kind = "migration"
    http_status = 500


class NotFound(PosegenError):
    kind = "not-found"
    http_status = 404


class Conflict(PosegenError):
    kind = "conflict"
    http_status = 409


class InvalidInput(PosegenError):
    kind = "invalid-input"
    http_status = 422


class BackendUnavailable(PosegenError):
    """No worker has served the requested backend (or model) recently: it would wait forever."""

    kind = "backend-unavailable"
    http_status = 422


class Unauthorized(PosegenError):
    kind = "unauthorized"
    http_status = 401


class Forbidden(PosegenError):
    kind = "forbidden"
    http_status = 403


class RateLimited(PosegenError):
    kind = "rate-limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after: int, kind: str | None = None) -> None:
        super().__init__(message, kind=kind)
        self.retry_after = retry_after


class QuotaExceeded(PosegenError):
    """A per-user cap on stored things (projects, result bytes); waiting does not lift it."""

    kind = "quota-exceeded"
    http_status = 429

    def __init__(self, message: str, *, kind: str | None = None, http_status: int = 429) -> None:
        super().__init__(message, kind=kind)
        self.http_status = http_status


class InsufficientCredits(PosegenError):
    """A submit costs more credits than the user has; nothing was charged or queued."""

    kind = "insufficient-credits"
    http_status = 402

    def __init__(self, message: str, *, required: int, balance: int) -> None:
        super().__init__(message)
        self.required = required
        self.balance = balance


class DailyQuotaExceeded(RateLimited):
    """A quota plan's poses for today are used up (or this generation needs more than are
    left); nothing was queued or counted. ``resets_at``: the next local midnight."""

    def __init__(
        self, message: str, *, retry_after: int, resets_at: str, daily: int, left: int
    ) -> None:
        super().__init__(message, retry_after=retry_after, kind="quota-exceeded")
        self.resets_at = resets_at
        self.daily = daily
        self.left = left


class LeaseLost(PosegenError):
    """A fenced worker write matched zero rows: another worker owns the generation now."""

    kind = "lease-lost"
    http_status = 409


class FetchError(PosegenError):
    """Loading an image (map or subject) failed; ``kind`` says why (``blocked-address``...)."""

    kind = "fetch"
    http_status = 422


class GeneratorError(PosegenError):
    """A generator backend failed. ``transient`` errors retry the whole generation later.

    ``outage``: the backend itself is unavailable (unreachable, 5xx, restarted, out of GPU
    memory), not the generation: the worker pauses claiming and gives the generation back
    without spending an attempt. ``whole_generation``: every pose would fail the same way (a
    workflow the server rejects), so the generation fails once instead of pose by pose.
    """

    kind = "generator"
    http_status = 502

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        kind: str | None = None,
        outage: bool = False,
        whole_generation: bool = False,
    ) -> None:
        super().__init__(message, kind=kind)
        self.transient = transient or outage
        self.outage = outage
        self.whole_generation = whole_generation


class UploadQuotaExceeded(PosegenError):
    """The user's stored uploads would pass ``POSEGEN_USER_UPLOAD_QUOTA_BYTES``."""

    kind = "upload-quota-exceeded"
    http_status = 413


class UploadsBusy(PosegenError):
    """Every upload decode slot stayed taken for too long; the client should retry."""

    kind = "uploads-busy"
    http_status = 503


class StorageUnavailable(PosegenError):
    """The object store refused or could not be reached (credentials, bucket, network)."""

    kind = "storage-unavailable"
    http_status = 503
