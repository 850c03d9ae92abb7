"""What the pipeline reads for one claimed generation: the project's subject and the poses.

Read-only; job state is written by ``posegen.queue`` alone. Also the two deterministic rules of
the pipeline: how a pose's prompt is built and which seed a variation gets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from posegen import catalog, uploads
from posegen.db.engine import read_connection
from posegen.db.models import PoseLibrary, Project, Upload, User

#: Without a prompt a library pose still needs a subject for the model to draw.
DEFAULT_SUBJECT_PROMPT = "a person"


@dataclass(frozen=True)
class PoseInfo:
    id: int
    name: str
    description: str
    #: The stored pose JSON (:mod:`posegen.pose`), None for a map-only pose.
    keypoints: Any
    controlnet_map_url: str | None
    map_upload_id: int | None = None
    #: Set only when the map upload is one the pose may use: an admin's for a library pose, the
    #: owner's own for a private pose (see ``library.pose_map_source``).
    map_upload_path: str | None = None


@dataclass(frozen=True)
class Subject:
    """The project's subject: a URL to fetch safely, or an upload's file below the uploads
    root. ``refused`` when the row names something this generation may not read."""

    url: str | None = None
    upload_path: str | None = None
    refused: bool = False


@dataclass(frozen=True)
class JobInputs:
    subject: Subject | None
    poses: dict[int, PoseInfo]


MapOwner = User.__table__.alias("map_owner")


def load_inputs(engine: Engine, project_id: int, pose_ids: list[int], user_id: int) -> JobInputs:
    """The project's subject and the selected poses (missing ones are absent), checked again
    here against ownership: the subject upload must be ``user_id``'s (the generation's user),
    a library pose's map upload an admin's; a private pose is used only in its owner's
    generations, with the owner's own map upload. Whatever wrote the rows, nobody else's pose
    or file is read."""
    with read_connection(engine) as conn:
        row = conn.execute(
            select(
                Project.subject_image_url,
                Project.subject_upload_id,
                Upload.user_id,
                Upload.sha256,
                Upload.content_type,
            )
            .outerjoin(Upload, Upload.id == Project.subject_upload_id)
            .where(Project.id == project_id)
        ).first()
        poses: dict[int, PoseInfo] = {}
        if pose_ids:
            rows = conn.execute(
                select(
                    PoseLibrary.id,
                    PoseLibrary.name,
                    PoseLibrary.description,
                    PoseLibrary.keypoints,
                    PoseLibrary.controlnet_map_url,
                    PoseLibrary.map_upload_id,
                    Upload.user_id,
                    Upload.sha256,
                    Upload.content_type,
                    MapOwner.c.role,
                    PoseLibrary.owner_user_id,
                )
                .outerjoin(Upload, Upload.id == PoseLibrary.map_upload_id)
                .outerjoin(MapOwner, MapOwner.c.id == Upload.user_id)
                .where(PoseLibrary.id.in_(set(pose_ids)))
            )
            for r in rows:
                if r.owner_user_id not in (None, user_id):
                    continue  # someone else's private pose: missing, like an unknown id
                path = None
                allowed = catalog.map_upload_allowed(r.owner_user_id, r.user_id, r.role)
                if r.sha256 is not None and allowed:
                    path = uploads.relpath(r.user_id, r.sha256, r.content_type)
                poses[r.id] = PoseInfo(
                    r.id,
                    r.name,
                    r.description or "",
                    r.keypoints,
                    r.controlnet_map_url,
                    r.map_upload_id,
                    path,
                )
    return JobInputs(_subject(row, user_id), poses)


def _subject(row: Any, user_id: int) -> Subject | None:
    if row is None:
        return None
    if row.subject_upload_id is not None:
        if row.sha256 is None or row.user_id != user_id:
            return Subject(refused=True)
        return Subject(upload_path=uploads.relpath(row.user_id, row.sha256, row.content_type))
    url = (row.subject_image_url or "").strip()
    if not url:
        return None
    if not url.lower().startswith(("http://", "https://")):
        # A path written before uploads were owned (or by hand): never read from disk.
        return Subject(refused=True)
    return Subject(url=url)


def build_prompt(request_prompt: str | None, pose: PoseInfo | None) -> str:
    """The request's prompt followed by the pose's name and description."""
    parts = [(request_prompt or "").strip() or DEFAULT_SUBJECT_PROMPT]
    if pose is not None:
        parts.append(pose.name.strip())
        if pose.description.strip():
            parts.append(pose.description.strip())
    return ", ".join(p for p in parts if p)


def pick_seed(given: int | None, generation_id: int, variation_key: str, index: int) -> int:
    """The request's seed (plus the variation index, so variations differ), or one derived
    from the generation id and variation key: stable across retries and resumes."""
    if given is not None:
        return given + index
    digest = hashlib.sha256(f"{generation_id}:{variation_key}".encode()).digest()
    return int.from_bytes(digest[:4], "big")
