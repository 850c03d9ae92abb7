"""pose schema: stored keypoints become the one pose JSON shape (canvas, framing, people)

Until now ``pose_library.keypoints`` held a bare list of 18 ``[x, y]`` points (or a list of
persons) normalised to an unrecorded canvas, and every renderer stretched it to the output size.
Each row becomes ``{"canvas": [512, 512], "framing": ..., "people": [{"body": [[x, y, c] |
null]}]}``: 512 x 512 is the size those poses were authored and previewed at (the default output
size; the built-in library's proportions are those of a person drawn on a square), and the
framing is read from the points (knees or ankles: full body; hips: half body; else portrait).
Rows already in the new shape, and rows that do not parse, are left as they are (the
application reports a bad pose when it renders it). Downgrade writes the bare lists back
(hands, face, canvas and framing are dropped; a confidence other than 1 is kept).

Revision ID: d_poseschema
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "d_poseschema"
down_revision = "b_limits"
branch_labels = None
depends_on = None

CANVAS = [512.0, 512.0]
BODY_POINTS = 18
_KNEES_ANKLES = (9, 10, 12, 13)
_HIPS = (8, 11)

poses = sa.table("pose_library", sa.column("id", sa.Integer), sa.column("keypoints", sa.JSON))


def upgrade() -> None:
    _rewrite(_to_pose)


def downgrade() -> None:
    _rewrite(_to_legacy)


def _rewrite(convert: Any) -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(poses.c.id, poses.c.keypoints).where(poses.c.keypoints.is_not(None))
    )
    for row_id, value in rows.fetchall():
        new = convert(value)
        if new is not None:
            conn.execute(sa.update(poses).where(poses.c.id == row_id).values(keypoints=new))


def _point(p: Any) -> list[float] | None:
    if not isinstance(p, list) or len(p) not in (2, 3):
        raise ValueError(p)
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in p):
        raise ValueError(p)
    confidence = float(p[2]) if len(p) == 3 else 1.0
    return None if confidence <= 0 else [float(p[0]), float(p[1]), confidence]


def _to_pose(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, list) or not value:
        return None  # already a pose object, or nothing this migration understands
    # One person is a list of points (null or a list of numbers); several, a list of those.
    one = all(
        p is None or (isinstance(p, list) and all(isinstance(v, int | float) for v in p))
        for p in value
    )
    persons = [value] if one else value
    try:
        people = []
        for person in persons:
            if not isinstance(person, list) or len(person) != BODY_POINTS:
                return None
            people.append({"body": [None if p is None else _point(p) for p in person]})
    except (ValueError, TypeError, IndexError):
        return None

    def seen(indices: tuple[int, ...]) -> bool:
        return any(p["body"][i] is not None for p in people for i in indices)

    framing = "full_body" if seen(_KNEES_ANKLES) else "half_body" if seen(_HIPS) else "portrait"
    return {"canvas": CANVAS, "framing": framing, "people": people}


def _legacy_point(p: Any) -> list[float] | None:
    if p is None:
        return None
    # The old parser read [x, y, confidence] too: keep a confidence that says something.
    return [p[0], p[1]] if len(p) < 3 or p[2] == 1.0 else [p[0], p[1], p[2]]


def _to_legacy(value: Any) -> list[Any] | None:
    if not isinstance(value, dict) or not isinstance(value.get("people"), list):
        return None
    bodies = [[_legacy_point(p) for p in person.get("body", [])] for person in value["people"]]
    return bodies[0] if len(bodies) == 1 else bodies
