"""ControlNet pose maps: safe fetching, validation, a host-wide single-flight cache, and
OpenPose rendering. The public surface is listed in ``__all__``."""

from posegen.controlnet.cache import MapCache, MapResult
from posegen.controlnet.images import load_image
from posegen.controlnet.render import render_keypoints
from posegen.controlnet.sources import MapSource, canonical_url
from posegen.controlnet.stats import COUNTERS, ERROR_KINDS
from posegen.controlnet.validate import snap, snap_size

__all__ = [
    "COUNTERS",
    "ERROR_KINDS",
    "MapCache",
    "MapResult",
    "MapSource",
    "canonical_url",
    "load_image",
    "render_keypoints",
    "snap",
    "snap_size",
]
