"""Exports made by workers: with each pose (the generation asked for formats), or later as
follow-up tasks of kind ``export`` (one per format of a finished generation). A result's
background variants are exported too: on demand with the originals, and a variant made after
its result was exported queues the same formats for itself (:func:`for_variant`, one task per
variant and format).

Files go to the result store first, under names fixed by ids and the format (a retry rewrites
the same names); their rows land in the queue's fenced write that follows, the pose's own or
the task's completion. A crash in between leaves files no row names, which the next attempt
overwrites: never a pose with half its exports, never a row without its file.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image
from sqlalchemy import Engine, select

from posegen.config import Settings
from posegen.db.engine import read_connection
from posegen.db.models import PoseGeneration, PoseLibrary
from posegen.exceptions import InvalidInput, NotFound, StorageUnavailable
from posegen.exporting import records, render
from posegen.queue import tasks
from posegen.storage import ResultStore

log = logging.getLogger(__name__)

#: The task kind (``generation_tasks.kind``) and its key per format.
KIND = "export"


def task_key(fmt: str, variant_id: int | None = None) -> str:
    """``export:<format>`` (the generation's), ``export:<format>:v<variant id>`` (one new
    variant's: its own key, so a generation whose ``export:<format>`` is completed still
    exports the variant)."""
    return f"{KIND}:{fmt}" if variant_id is None else f"{KIND}:{fmt}:v{variant_id}"


def for_variant(
    conn: Any, settings: Settings, generation_id: int, result_id: int, variant_id: int
) -> list[tasks.TaskSpec]:
    """In a background task's completion: the export tasks its new variant follows, one per
    format the generation asked for at submit or its result was exported in since."""
    asked = conn.execute(
        select(PoseGeneration.export_formats).where(PoseGeneration.id == generation_id)
    ).scalar()
    fmts = list(dict.fromkeys([*(asked or []), *records.formats_of_result(conn, result_id)]))
    known = render.formats(settings)
    return [
        tasks.TaskSpec(
            KIND,
            task_key(fmt, variant_id),
            {"format": fmt, "variantId": variant_id},
            result_id=result_id,
            max_attempts=settings.max_attempts,
        )
        for fmt in fmts
        if fmt in known
    ]


@dataclass(frozen=True)
class Requested:
    """One format of an export request: ``queued`` now, already ``pending``/``processing``,
    ``completed`` (every result has it) or made by this call's re-queue of a ``failed`` one."""

    format: str
    status: str
    queued: bool
    task_id: int | None
    #: Every task of this format the request stands for (the generation's and its variants').
    task_ids: tuple[int, ...] = ()


def request(
    engine: Engine, settings: Settings, generation_id: int, formats: Sequence[str]
) -> list[Requested]:
    """Queue an export task per format that some completed result (or background variant)
    lacks; idempotent. A variant's missing export is queued under its own key too when the
    generation's task of that format has started or completed (it may have listed its work
    before the variant was made)."""
    wanted = render.check(settings, list(formats))
    specs: list[tasks.TaskSpec] = []
    done: list[str] = []
    with read_connection(engine) as conn:
        known = tasks.open_keys(conn, generation_id, KIND)
        for fmt in wanted:
            todo = records.missing(conn, generation_id, fmt)
            if not todo:
                done.append(fmt)
                continue
            specs.append(tasks.TaskSpec(KIND, task_key(fmt), {"format": fmt}))
            if known.get(task_key(fmt)) not in ("processing", "completed"):
                continue  # the generation's task, still to start, makes the variants too
            specs.extend(
                tasks.TaskSpec(
                    KIND,
                    task_key(fmt, s.variant_id),
                    {"format": fmt, "variantId": s.variant_id},
                    result_id=s.result_id,
                )
                for s in todo
                if s.variant_id is not None
            )
    states = {s.key: s for s in tasks.enqueue(engine, settings, generation_id, specs)}
    out: list[Requested] = []
    for fmt in wanted:
        st = states.get(task_key(fmt))
        mine = [v for k, v in states.items() if k.startswith(f"{task_key(fmt)}:v")]
        if fmt in done or st is None:
            out.append(Requested(fmt, "completed", False, None))
        elif st.status.value == "completed" and mine:
            # The originals were done before; the variants' own tasks carry the work.
            first = next((m for m in mine if m.queued), mine[0])
            ids = tuple(m.id for m in mine)
            out.append(
                Requested(fmt, first.status.value, any(m.queued for m in mine), first.id, ids)
            )
        else:
            out.append(
                Requested(
                    fmt,
                    st.status.value,
                    st.queued or any(m.queued for m in mine),
                    st.id,
                    (st.id, *(m.id for m in mine)),
                )
            )
    return out


def make(
    store: ResultStore,
    settings: Settings,
    generation_id: int,
    variation_key: str,
    image: bytes | Image.Image,
    pose: Any,
    formats: Sequence[str],
    table: dict[str, Any] | None = None,
) -> list[records.ExportFile]:
    """Render and store one result in each of ``formats``; the caller writes the rows."""
    table = table if table is not None else render.formats(settings)
    out: list[records.ExportFile] = []
    for r in render.render_many(image, pose, list(formats), table):
        rel = store.save_export(generation_id, variation_key, r.format, r.ext, r.data)
        out.append(
            records.ExportFile(r.format, rel, len(r.data), r.width, r.height, r.content_type)
        )
    return out


def archive_members(
    engine: Engine, store: ResultStore, generation_id: int, formats: Sequence[str]
) -> list[tuple[str, Any]]:
    """``(format/pose-name-v<n>[.bg-<digest>].<ext>, opener)`` for the generation's exports in
    ``formats``, its background variants' beside their results': each member opened from the
    store only when the archive reaches it."""
    import functools

    from posegen.exporting import names

    rows = records.of_formats(engine, generation_id, formats)
    ids = sorted({r.pose_id for r in rows if r.pose_id is not None})
    pose_names: dict[int, str] = {}
    if ids:
        with read_connection(engine) as conn:
            pose_names = {
                int(i): str(n)
                for i, n in conn.execute(
                    select(PoseLibrary.id, PoseLibrary.name).where(PoseLibrary.id.in_(ids))
                )
            }
    return [
        (name, functools.partial(store.open_stream, r.file.path))
        for name, r in zip(names.member_names(rows, pose_names), rows, strict=True)
    ]


def pose_json(engine: Engine, pose_ids: Sequence[int | None]) -> dict[int, Any]:
    """The stored pose JSON of library poses (what the framing reads), by id."""
    ids = sorted({p for p in pose_ids if p is not None})
    if not ids:
        return {}
    with read_connection(engine) as conn:
        return {
            int(i): k
            for i, k in conn.execute(
                select(PoseLibrary.id, PoseLibrary.keypoints).where(PoseLibrary.id.in_(ids))
            )
        }


def run_task(
    engine: Engine,
    settings: Settings,
    store: ResultStore,
    task: tasks.ClaimedTask,
    stopping: threading.Event,
) -> str:
    """The ``export`` task handler: every completed result lacking the format, then one fenced
    completion writing all their rows. Returns the outcome for the worker's stats."""
    fmt = str(task.params.get("format", ""))
    try:
        table = render.formats(settings)
        if fmt not in table:
            raise InvalidInput(f"unknown export format {fmt!r}", kind="unknown-export-format")
        with read_connection(engine) as conn:
            todo = records.missing(conn, task.generation_id, fmt)
        poses = pose_json(engine, [s.pose_id for s in todo])
        made: list[tuple[records.Source, records.ExportFile]] = []
        for src in todo:
            if stopping.is_set():
                tasks.release(engine, task)
                return "released"
            data = store.read(src.image_path)
            key = src.variation_key
            if src.variant_id is not None:
                key = f"{key}-{src.variant_key}"[:100]
            files = make(
                store,
                settings,
                task.generation_id,
                key,
                data,
                poses.get(src.pose_id or 0),
                [fmt],
                table,
            )
            made.extend((src, f) for f in files)
            if not tasks.extend(engine, settings, task):
                return "lease-lost"
    except (StorageUnavailable, OSError) as exc:
        tasks.fail(engine, settings, task, "storage", str(exc), transient=True)
        return "retrying"
    except (InvalidInput, NotFound) as exc:
        tasks.fail(
            engine, settings, task, exc.kind or "invalid-input", exc.message, transient=False
        )
        return "failed"
    except Exception as exc:  # a renderer bug: retried, then failed with the reason
        log.exception("export task failed", extra={"task_id": task.id, "format": fmt})
        tasks.fail(
            engine, settings, task, "internal", f"{type(exc).__name__}: {exc}", transient=True
        )
        return "retrying"

    def apply(conn: Any) -> dict[str, Any]:
        stored = records.insert(conn, task.generation_id, made)
        return {"exports": len(made), "storedBytes": stored}

    if tasks.complete(engine, task, apply):
        return "completed"
    return "lease-lost"
