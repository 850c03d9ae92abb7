"""The vision package's errors (problem types ``vision-not-installed``, ``vision-failed``,
``vision-timeout``)."""

from __future__ import annotations

from posegen.exceptions import PosegenError

INSTALL_HINT = "run `make install-vision` (or set POSEGEN_VISION_PYTHON to its Python)"


class VisionUnavailable(PosegenError):
    """The vision environment is missing or broken: nothing a retry will fix."""

    kind = "vision-not-installed"
    http_status = 503
    #: What a client reads (the message, with the server's paths, goes to the log).
    public_detail = (
        "pose and mask extraction is not installed on this server: an operator runs "
        "`make install-vision` (the vision helper's own environment)"
    )


class VisionFailed(PosegenError):
    """The helper died or answered an error mid-request; the next request starts a new one."""

    kind = "vision-failed"
    http_status = 503

    @property
    def public_detail(self) -> str:
        if self.kind == "vision-busy":
            return "the vision helper is busy with other photos; try again shortly"
        if self.kind == "vision-timeout":
            return "the photo took too long to analyse; try again, or send a smaller photo"
        return "the vision helper failed on this photo; try again"
