"""The person in a project's subject upload, detected once and kept with the upload.

When: after the upload's request has been answered (the API schedules :func:`detect_quietly`
as a background task of the request that attached the subject), and lazily by
:func:`detection` for any reader that finds no row yet. Not inside the upload request: the
first detection in a process starts the helper (seconds on a loaded machine) and a detection
must never fail or slow an upload; not on a worker: there is no follow-up task kind for it yet
(the tasks mechanism belongs to another branch), and the API process has the photo at hand.
Without the vision environment nothing is stored and nothing fails; readers get
``vision-not-installed``.

One row per upload (``upload_detections``, removed with the upload); two concurrent detections
of one upload store one row (the second insert loses and reads the first).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

from PIL import Image
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from posegen import uploads
from posegen.config import Settings
from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import Upload, UploadDetection
from posegen.db.types import utcnow
from posegen.exceptions import NotFound, PosegenError
from posegen.vision import client
from posegen.vision.extract import detect

log = logging.getLogger(__name__)
D = UploadDetection


@dataclass(frozen=True)
class SubjectDetection:
    upload_id: int
    #: ``found`` or ``no-person``.
    status: str
    pose: dict[str, Any] | None
    box: list[float] | None
    mask_png: bytes | None
    warnings: list[dict[str, str]]


def stored(engine: Engine, upload_id: int, user_id: int) -> SubjectDetection | None:
    """The kept detection of the owner's upload (None: not detected yet; NotFound: no upload)."""
    uploads.get(engine, upload_id, user_id)  # the owner check: another's upload is not found
    with read_connection(engine) as conn:
        row = conn.execute(select(D).where(D.upload_id == upload_id)).first()
    return None if row is None else _view(row)


def detection(engine: Engine, settings: Settings, upload_id: int, user_id: int) -> SubjectDetection:
    """The owner's upload's detection, made now if it was not kept yet."""
    found = stored(engine, upload_id, user_id)
    if found is not None:
        return found
    _, data = uploads.content(engine, settings, upload_id, user_id)
    return _store(engine, upload_id, detect_bytes(settings, data))


def detect_bytes(settings: Settings, data: bytes) -> dict[str, Any]:
    """Detect the person in ``data``: the row's values (pose, box, mask PNG, warnings)."""
    found = detect(settings, data)
    extraction = found.extraction
    mask_png = None
    if extraction.pose is not None:
        buf = io.BytesIO()
        Image.fromarray(found.mask, "L").save(buf, "PNG", optimize=True)
        mask_png = buf.getvalue()
    return {
        "status": "found" if extraction.pose is not None else "no-person",
        "pose": None if extraction.pose is None else extraction.pose.to_json(),
        "box": None if found.box is None else list(found.box),
        "mask_png": mask_png,
        "warnings": [w.to_json() for w in extraction.warnings],
    }


def detect_quietly(engine: Engine, settings: Settings, upload_id: int) -> None:
    """Detect and keep the person of an upload once, logging instead of raising (a background
    task: nobody is waiting for it). Skipped without the vision environment."""
    if not settings.vision_detect_subjects or not client.available(settings):
        return
    try:
        with read_connection(engine) as conn:
            owner = conn.execute(select(Upload.user_id).where(Upload.id == upload_id)).scalar()
        if owner is None:
            return  # removed meanwhile
        detection(engine, settings, upload_id, owner)
    except PosegenError as exc:
        log.warning(
            "subject detection failed",
            extra={"upload_id": upload_id, "kind": exc.kind, "error": exc.message},
        )


def _store(engine: Engine, upload_id: int, values: dict[str, Any]) -> SubjectDetection:
    try:
        with write_transaction(engine) as conn:
            conn.execute(insert(D).values(upload_id=upload_id, created_at=utcnow(), **values))
    except IntegrityError:
        pass  # kept by a concurrent detection (or the upload is gone: the read below says)
    with read_connection(engine) as conn:
        row = conn.execute(select(D).where(D.upload_id == upload_id)).first()
    if row is None:
        raise NotFound(f"upload {upload_id} not found", kind="upload-not-found")
    return _view(row)


def _view(row: Any) -> SubjectDetection:
    return SubjectDetection(
        row.upload_id, row.status, row.pose, row.box, row.mask_png, list(row.warnings or [])
    )
