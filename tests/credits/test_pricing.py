"""The pricing function: every part is per pose, so a failed pose refunds ``total // poses``
whatever extras it carried; with every price at 0 nothing costs anything."""

from __future__ import annotations

from posegen.config import Settings
from posegen.credits import pricing


def test_parts_are_per_pose_and_add_up() -> None:
    s = Settings(credits_per_pose=3, credits_per_export=2, credits_background_surcharge=5)
    q = pricing.quote(s, 4, export_formats=("png", "webp", "png"), background=True)
    per_pose = s.credits_per_pose + 2 * s.credits_per_export + s.credits_background_surcharge
    assert (q.per_pose, q.poses, q.total) == (per_pose, 4, 4 * per_pose)
    assert q.breakdown == {
        "base": 4 * s.credits_per_pose,
        "exports": 4 * 2 * s.credits_per_export,
        "background": 4 * s.credits_background_surcharge,
    }
    assert sum(q.breakdown.values()) == q.total
    assert pricing.price(s, 4, ("png", "webp"), True) == (q.total, q.breakdown)
    assert pricing.per_pose(q.total, q.poses) == per_pose
    plain = pricing.quote(s, 4)
    assert plain.total == 4 * s.credits_per_pose and plain.breakdown["exports"] == 0


def test_free_by_default() -> None:
    q = pricing.quote(Settings(), 10, export_formats=("png",), background=True)
    assert (q.total, q.per_pose) == (0, 0) and set(q.breakdown.values()) == {0}
    assert pricing.per_pose(0, 10) == 0
