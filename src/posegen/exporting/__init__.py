"""Exports of results in the formats people publish to, as workers make them and the API serves
them: the ``result_exports`` rows (:mod:`records`), the renderer's call site (:mod:`render`),
and the flow: at generation time with each pose, or on demand as ``export`` follow-up tasks
(:mod:`flow`). The renderer itself (formats, framing) is ``posegen.exports``."""

from __future__ import annotations

from posegen.exporting.flow import (
    KIND,
    Requested,
    archive_members,
    for_variant,
    make,
    pose_json,
    request,
    run_task,
    task_key,
)
from posegen.exporting.records import ExportFile, ExportRow
from posegen.exporting.render import check, formats

__all__ = [
    "KIND",
    "ExportFile",
    "ExportRow",
    "Requested",
    "archive_members",
    "check",
    "for_variant",
    "formats",
    "make",
    "pose_json",
    "request",
    "run_task",
    "task_key",
]
