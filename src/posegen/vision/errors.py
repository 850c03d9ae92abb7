"""The vision package's errors (problem types ``vision-not-installed``, ``vision-failed``,
``vision-timeout``)."""

from __future__ import annotations

from posegen.exceptions import PosegenError

INSTALL_HINT = "run `make install-vision` (or set POSEGEN_VISION_PYTHON to its Python)"


class VisionUnavailable(PosegenError):
    """The vision environment is missing or broken: nothing a retry will fix."""

    kind = "vision-not-installed"
    http_status = 503


class VisionFailed(PosegenError):
    """The helper died or answered an error mid-request; the next request starts a new one."""

    kind = "vision-failed"
    http_status = 503
