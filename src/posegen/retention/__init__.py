"""Bounded growth: what ``posegen prune`` (and each worker's periodic prune) deletes.

Old generations' events, old generations with their results (unless kept), uploads nothing
refers to (each after its ``POSEGEN_RETENTION_*_DAYS``, all off by default), and stored files
no row names (after ``POSEGEN_ORPHAN_GRACE_SECONDS``). Rows go first, in short keyset batches;
bytes go after their rows, so no row ever names missing bytes.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import Engine

from posegen.config import Settings
from posegen.db.types import utcnow
from posegen.retention import orphans, rows
from posegen.retention.keep import set_kept
from posegen.retention.report import PruneReport, Tally

log = logging.getLogger(__name__)

__all__ = ["PruneReport", "Tally", "prune", "set_kept"]


def prune(
    engine: Engine,
    settings: Settings,
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    orphans_too: bool = True,
) -> PruneReport:
    """One prune by these settings; ``dry_run`` counts what it would delete and deletes nothing."""
    now = now or utcnow()
    report = PruneReport(dry_run=dry_run)
    batch = settings.prune_batch_size
    if settings.retention_events_days > 0:
        cutoff = now - dt.timedelta(days=settings.retention_events_days)
        rows.prune_events(engine, cutoff, batch, report)
    if settings.retention_results_days > 0:
        cutoff = now - dt.timedelta(days=settings.retention_results_days)
        rows.prune_generations(engine, settings, cutoff, batch, report)
    if settings.retention_uploads_days > 0:
        cutoff = now - dt.timedelta(days=settings.retention_uploads_days)
        rows.prune_uploads(engine, settings, cutoff, batch, report)
    if orphans_too:
        orphans.sweep(engine, settings, report, now)
    return report
