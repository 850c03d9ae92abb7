"""Vision: person keypoints and masks from photos, on CPU and offline, and background changes.

The models (mediapipe 0.10.21) run in a helper process with its own environment (``make
install-vision``); this process never imports mediapipe. Without that environment every call
raises :class:`VisionUnavailable` (503 ``vision-not-installed``) and the rest of posegen works.
``change_background`` needs no helper: it composites with a mask already made.
"""

from posegen.vision.client import HelperPool, available, helper_for, require
from posegen.vision.composite import MODES, change_background, parse_color
from posegen.vision.errors import VisionFailed, VisionUnavailable
from posegen.vision.extract import (
    Detection,
    Extraction,
    PhotoWarning,
    detect,
    extract,
    extract_all,
    mask_box,
    segment,
)
from posegen.vision.poses import create_private_pose_from_photo

__all__ = [
    "MODES",
    "Detection",
    "Extraction",
    "HelperPool",
    "PhotoWarning",
    "VisionFailed",
    "VisionUnavailable",
    "available",
    "change_background",
    "create_private_pose_from_photo",
    "detect",
    "extract",
    "extract_all",
    "helper_for",
    "mask_box",
    "parse_color",
    "require",
    "segment",
]
