"""A private pose from a photo: the helper extracts the pose, :mod:`posegen.library` saves it.

The photo is checked like an upload and not kept (only the extracted keypoints are). No person
in the photo is 422 ``no-person-found`` and nothing is saved; without the vision environment
:class:`~posegen.vision.VisionUnavailable` (503 ``vision-not-installed``).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine

from posegen import library
from posegen.catalog import PoseView
from posegen.config import Settings
from posegen.exceptions import InvalidInput
from posegen.vision.extract import PhotoWarning, extract


def create_private_pose_from_photo(
    engine: Engine,
    settings: Settings,
    user_id: int,
    photo: bytes,
    name: str,
    *,
    description: str = "",
    category: str | int | None = None,
    tags: Iterable[str] = (),
) -> tuple[PoseView, tuple[PhotoWarning, ...]]:
    """Save the pose of the (largest) person in ``photo`` as ``user_id``'s private pose; returns
    it with the extraction's warnings (``several-people``, ``partial-body``)."""
    found = extract(settings, photo)
    if found.pose is None:
        raise InvalidInput(
            "no person was found in the photo: send one where a person is clearly visible",
            kind="no-person-found",
        )
    pose = library.create_private_pose(
        engine,
        user_id,
        found.pose.to_json(),
        name,
        description=description,
        category=category,
        tags=tags,
    )
    return pose, found.warnings
