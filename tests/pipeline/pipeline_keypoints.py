"""Two COCO-18 poses the pipeline tests draw maps from."""

from __future__ import annotations

from typing import Any

STANDING: list[Any] = [
    [0.5, 0.15],
    [0.5, 0.25],
    [0.4, 0.25],
    [0.35, 0.4],
    [0.33, 0.55],
    [0.6, 0.25],
    [0.65, 0.4],
    [0.67, 0.55],
    [0.45, 0.55],
    [0.45, 0.72],
    [0.45, 0.9],
    [0.55, 0.55],
    [0.55, 0.72],
    [0.55, 0.9],
    [0.48, 0.13],
    [0.52, 0.13],
    [0.46, 0.14],
    [0.54, 0.14],
]
# Arms up: same body, wrists and elbows above the head.
ARMS_UP = [*STANDING]
ARMS_UP[3], ARMS_UP[4], ARMS_UP[6], ARMS_UP[7] = (
    [0.35, 0.1],
    [0.33, 0.02],
    [0.65, 0.1],
    [0.67, 0.02],
)
