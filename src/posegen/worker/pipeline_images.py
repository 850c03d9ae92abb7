"""The pipeline's image inputs: the subject (safe fetch / uploads rules) and decoded pose maps.

Fetch errors are turned into what the pipeline needs to decide: a subject that cannot be loaded
fails the whole generation (permanently, or transiently for network trouble); a pose map error is
the caller's to record against that pose.
"""

from __future__ import annotations

import io
import logging
import threading
from collections import OrderedDict

from PIL import Image

from posegen.config import Settings
from posegen.controlnet import MapCache, load_image
from posegen.exceptions import FetchError, GeneratorError, InvalidInput
from posegen.library import load_pose_map
from posegen.pose import Framing, parse_pose
from posegen.worker.job_inputs import PoseInfo, Subject

log = logging.getLogger(__name__)

#: Fetch failures worth retrying the generation for; the rest (blocked address, not an image,
#: too large...) will fail the same way again.
TRANSIENT_FETCH_KINDS = frozenset({"timeout", "connect"})
_DECODED_ITEMS = 64


class PipelineImages:
    """Loads subjects and maps; keeps recently decoded maps (the same poses recur constantly)."""

    def __init__(self, settings: Settings, maps: MapCache) -> None:
        self.settings = settings
        self.maps = maps
        self._decoded: OrderedDict[str, Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def subject(self, subject: Subject | None) -> Image.Image | None:
        """The project's subject image, or None when it has none.

        An upload that is not the generation's user's, an upload whose row or file is gone, and
        a stored path all fail alike (``subject-unavailable``): the user learns nothing about
        which ids or files exist. The detail goes to the log.
        """
        if subject is None:
            return None
        if subject.refused:
            log.warning("subject refused: not the generation user's upload, or a stored path")
            raise _unavailable()
        if subject.upload_path is not None:
            try:
                return load_image(self.settings, subject.upload_path)
            except FetchError as exc:
                log.warning("subject upload unreadable", extra={"kind": exc.kind})
                if exc.kind in TRANSIENT_FETCH_KINDS:
                    # The object store is away: an outage, not the generation's fault (the
                    # breaker pauses claiming; no attempt is spent).
                    raise GeneratorError(
                        "subject image: the object store is unavailable",
                        transient=True,
                        outage=True,
                        kind="storage",
                    ) from exc
                raise _unavailable() from exc
        assert subject.url is not None
        try:
            return load_image(self.settings, subject.url)
        except FetchError as exc:
            raise GeneratorError(
                f"subject image: {exc.message}",
                transient=exc.kind in TRANSIENT_FETCH_KINDS,
                kind=f"subject-{exc.kind}",
            ) from exc

    def pose_map(self, pose: PoseInfo | None, size: tuple[int, int]) -> Image.Image | None:
        """The pose's ControlNet map near ``size`` (None for text poses or a placeholder URL).

        Stored keypoints win over a map URL (rendered locally, no fetch). Raises FetchError /
        InvalidInput with the map's error kind.
        """
        if pose is None:
            return None
        result = load_pose_map(self.maps, pose, size)
        if result is None:
            return None
        with self._lock:
            image = self._decoded.get(result.sha256)
            if image is not None:
                self._decoded.move_to_end(result.sha256)
                return image
        with Image.open(io.BytesIO(result.png), formats=["PNG"]) as raw:
            image = raw.convert("RGB")
        with self._lock:
            self._decoded[result.sha256] = image
            while len(self._decoded) > _DECODED_ITEMS:
                self._decoded.popitem(last=False)
        return image


def _unavailable() -> GeneratorError:
    return GeneratorError(
        "the subject image is not available", transient=False, kind="subject-unavailable"
    )


def framing_of(pose: PoseInfo | None) -> Framing | None:
    """The pose's framing, for fitting the subject; None when it is only a map (or a text
    request): then nothing is assumed and the subject is fitted for a full body."""
    if pose is None or not pose.keypoints:
        return None
    try:
        return parse_pose(pose.keypoints).framing
    except InvalidInput:
        return None  # its map load reports the bad pose against that pose
