"""Workers: claim generations, run a handler per generation in a thread, heartbeat the leases,
recover expired ones, and shut down gracefully. Job state is written only through
:mod:`posegen.queue`."""

from posegen.worker.context import JobContext, JobHandler
from posegen.worker.loop import Worker

__all__ = ["JobContext", "JobHandler", "Worker"]
