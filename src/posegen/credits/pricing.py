"""What a generation costs, from the price settings: the one place prices are computed (submit
charges it, the dashboard's form shows it before submitting).

Every part is a price *per pose* times the generation's poses (poses x variations), so a failed
pose is refunded exactly ``total // poses`` whatever extras it carried:

- base: ``POSEGEN_CREDITS_PER_POSE``;
- exports: ``POSEGEN_CREDITS_PER_EXPORT`` for each export format asked for at submit;
- background: ``POSEGEN_CREDITS_BACKGROUND_SURCHARGE`` when the background is changed.

With every price at 0 (the default) everything is free and nothing is charged or ledgered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from posegen.config import Settings


@dataclass(frozen=True)
class Quote:
    #: Credits for the whole generation.
    total: int
    #: Credits one pose costs (extras included): what a failed pose refunds.
    per_pose: int
    poses: int
    #: The parts of ``total``: ``base``, ``exports``, ``background`` (each for all poses).
    breakdown: dict[str, int]


def quote(
    settings: Settings,
    poses: int,
    export_formats: Sequence[str] = (),
    background: bool = False,
) -> Quote:
    """The price of ``poses`` poses (already multiplied by variations) with these extras."""
    n = max(poses, 0)
    parts = {
        "base": settings.credits_per_pose,
        "exports": settings.credits_per_export * len(set(export_formats)),
        "background": settings.credits_background_surcharge if background else 0,
    }
    per_pose = sum(parts.values())
    return Quote(per_pose * n, per_pose, n, {k: v * n for k, v in parts.items()})


def price(
    settings: Settings,
    poses: int,
    export_formats: Sequence[str] = (),
    background: bool = False,
) -> tuple[int, dict[str, int]]:
    """(total, breakdown) of :func:`quote`."""
    q = quote(settings, poses, export_formats, background)
    return q.total, q.breakdown


def per_pose(charged: int, poses: int) -> int:
    """What one pose of a generation charged ``charged`` for ``poses`` poses cost."""
    return charged // poses if poses > 0 and charged > 0 else 0
