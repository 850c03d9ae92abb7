"""Premium library poses: usable in a generation only by a user on a live quota plan (the plan
that includes them, :mod:`posegen.credits.plans`) or an admin.

Pay-as-you-go users, and users whose quota plan has expired, may browse premium poses but not
generate with them: :func:`check` raises :class:`~posegen.exceptions.Forbidden` (403
``premium-pose``) naming them, before anything is queued or charged. Every submit path (API,
dashboard form, ``posegen generate``) calls it next to the check that the poses exist.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, select

from posegen.config import Settings
from posegen.credits import plans
from posegen.db.engine import read_connection
from posegen.db.models import PoseLibrary
from posegen.exceptions import Forbidden

KIND = "premium-pose"
#: Names shown in the message before "and N more".
SHOWN = 5


def premium_among(engine: Engine, pose_ids: Sequence[int]) -> list[tuple[int, str]]:
    """(id, name) of the premium poses among ``pose_ids``, in id order."""
    if not pose_ids:
        return []
    stmt = (
        select(PoseLibrary.id, PoseLibrary.name)
        .where(PoseLibrary.id.in_(list(pose_ids)), PoseLibrary.premium.is_(True))
        .order_by(PoseLibrary.id)
    )
    with read_connection(engine) as conn:
        return [(int(r.id), str(r.name)) for r in conn.execute(stmt)]


def check(
    engine: Engine,
    settings: Settings,
    premium: Sequence[tuple[int, str]],
    user_id: int,
    *,
    admin: bool,
) -> None:
    """Raise 403 ``premium-pose`` if ``premium`` (the (id, name) of the premium poses a submit
    names: :func:`posegen.catalog.check_poses` or :func:`premium_among`) is not empty and the
    user is neither an admin nor on a live quota plan. None among them: no read at all."""
    if admin or not premium:
        return
    found = list(premium)
    standing = plans.standing(engine, settings, user_id)
    if standing.plan.is_quota:
        return
    named = ", ".join(f"{name!r} (id {pid})" for pid, name in found[:SHOWN])
    if len(found) > SHOWN:
        named += f" and {len(found) - SHOWN} more"
    why = (
        f"your quota plan ended on {standing.plan.valid_until.isoformat()}"
        if standing.plan.expired and standing.plan.valid_until is not None
        else "you are on pay as you go"
    )
    noun = "is a premium pose" if len(found) == 1 else "are premium poses"
    raise Forbidden(
        f"{named} {noun}, included in the quota plan only ({why}); "
        "remove them, or ask an admin for a quota plan",
        kind=KIND,
    )
