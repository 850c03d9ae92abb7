"""The durable generation queue: the only code that writes job state.

``pose_generations`` is the queue (no second broker). Every function is one transaction over a
SQLAlchemy ``Engine`` and works the same on SQLite and PostgreSQL; what differs lives in
``dialect_sqlite`` and ``dialect_pg``. Lease-holder writes are fenced on the lease token.
"""

from posegen.queue.batch import BatchResult, record_pose, record_poses, write_batch
from posegen.queue.cancel import cancel
from posegen.queue.claim import claim, pending_exists
from posegen.queue.dead_workers import recover_dead_workers
from posegen.queue.finish import fail_permanent, fail_transient, finish, finish_many
from posegen.queue.lease import heartbeat, heartbeat_many, release, release_many
from posegen.queue.model import (
    ClaimedJob,
    GenerationRequest,
    HeartbeatResult,
    PoseResult,
    RecoveryOutcome,
    SubmitResult,
    variation_key,
)
from posegen.queue.progress import PoseOutcome, PoseWrite
from posegen.queue.quota import UNLIMITED, SubmitLimits, estimate_result_bytes
from posegen.queue.recovery import recover
from posegen.queue.submit import submit, submit_many

__all__ = [
    "UNLIMITED",
    "BatchResult",
    "ClaimedJob",
    "GenerationRequest",
    "HeartbeatResult",
    "PoseOutcome",
    "PoseResult",
    "PoseWrite",
    "RecoveryOutcome",
    "SubmitLimits",
    "SubmitResult",
    "cancel",
    "claim",
    "estimate_result_bytes",
    "fail_permanent",
    "fail_transient",
    "finish",
    "finish_many",
    "heartbeat",
    "heartbeat_many",
    "pending_exists",
    "record_pose",
    "record_poses",
    "recover",
    "recover_dead_workers",
    "release",
    "release_many",
    "submit",
    "submit_many",
    "variation_key",
    "write_batch",
]
