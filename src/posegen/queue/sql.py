"""Statement pieces shared by both dialects (column lists and result types)."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Integer, String, TextClause
from sqlalchemy.sql.elements import TextClause as _Text
from sqlalchemy.sql.selectable import TextualSelect

from posegen.db.types import UTCDateTime

CLAIM_RETURNING = (
    "id, lease_token, user_id, project_id, type, selected_pose_ids, variations, prompt, "
    "negative_prompt, width, height, seed, attempts, max_attempts, deadline_at, priority, "
    "run_after, total_expected_poses, poses_completed, poses_failed, traceparent, backend, model, "
    "export_formats, background"
)


def claim_columns(stmt: TextClause) -> TextualSelect:
    """Type the claim's RETURNING columns so both drivers hand back the same Python values."""
    assert isinstance(stmt, _Text)
    return stmt.columns(
        id=BigInteger(),
        lease_token=BigInteger(),
        user_id=BigInteger(),
        project_id=BigInteger(),
        type=String(),
        selected_pose_ids=JSON(),
        variations=Integer(),
        attempts=Integer(),
        max_attempts=Integer(),
        deadline_at=UTCDateTime(),
        priority=Integer(),
        run_after=UTCDateTime(),
        total_expected_poses=Integer(),
        poses_completed=Integer(),
        poses_failed=Integer(),
        traceparent=String(),
        backend=String(),
        model=String(),
        export_formats=JSON(),
        background=JSON(),
    )
