"""What the pipeline reads for one claimed generation: the project's subject and the poses.

Read-only; job state is written by ``posegen.queue`` alone. Also the two deterministic rules of
the pipeline: how a pose's prompt is built and which seed a variation gets.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from posegen.db.engine import read_connection
from posegen.db.models import PoseLibrary, Project

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


@dataclass(frozen=True)
class JobInputs:
    subject_image_url: str | None
    poses: dict[int, PoseInfo]


def load_inputs(engine: Engine, project_id: int, pose_ids: list[int]) -> JobInputs:
    """The project's subject image reference and the selected poses (missing ones are absent)."""
    with read_connection(engine) as conn:
        subject = conn.execute(
            select(Project.subject_image_url).where(Project.id == project_id)
        ).scalar_one_or_none()
        poses: dict[int, PoseInfo] = {}
        if pose_ids:
            rows = conn.execute(
                select(
                    PoseLibrary.id,
                    PoseLibrary.name,
                    PoseLibrary.description,
                    PoseLibrary.keypoints,
                    PoseLibrary.controlnet_map_url,
                ).where(PoseLibrary.id.in_(set(pose_ids)))
            )
            for row in rows:
                poses[row.id] = PoseInfo(
                    row.id, row.name, row.description or "", row.keypoints, row.controlnet_map_url
                )
    return JobInputs(subject or None, poses)


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
