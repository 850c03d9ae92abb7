"""Which backends a deployment serves: what a generation may be bound to, what is a preview.

A generation is bound to a backend (and maybe a model) when it is accepted; only a worker serving
it claims it (see :mod:`posegen.queue.claim`). The API asks here before accepting: a backend that
no worker has served recently would wait forever, so it is refused; one whose workers are merely
paused (an outage) or that is the deployment's own default is queued (the default with a warning
when no worker has been seen, since ``posegen up`` and a fresh deployment start their API first).
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from sqlalchemy import Engine, select

from posegen.config import Settings
from posegen.db.engine import read_connection
from posegen.db.models import Worker
from posegen.db.types import utcnow
from posegen.exceptions import BackendUnavailable, InvalidInput

#: The backends a request may name (``noop`` is for load tests and stands in for ``posemap``).
RequestBackend = Literal["posemap", "diffusers", "comfyui"]

#: Backends whose images are previews (no model drew them): results and generations say so.
PREVIEW_BACKENDS = frozenset({"posemap", "noop"})

#: How to turn a real model on, for every surface that shows a preview.
REAL_MODEL_HINT = (
    "set POSEGEN_BACKEND=diffusers (with POSEGEN_DIFFUSERS_MODEL_PATH and "
    "POSEGEN_DIFFUSERS_CONTROLNET_PATH) or POSEGEN_BACKEND=comfyui (with POSEGEN_COMFYUI_URL); "
    "see docs/models.md"
)


#: Backends whose generators repaint a background from a prompt (``inpaint``; see
#: :func:`posegen.generators.base.can_inpaint`). Fixed per backend: diffusers always builds its
#: inpainting pipeline from the loaded weights, comfyui always has an inpaint workflow (the
#: shipped one or ``POSEGEN_COMFYUI_INPAINT_WORKFLOW_PATH``, checked at worker start).
INPAINT_BACKENDS = frozenset({"diffusers", "comfyui"})


def supports_inpaint(backend: str) -> bool:
    """Whether workers of ``backend`` can repaint a background from a prompt."""
    return backend in INPAINT_BACKENDS


def check_inpaint(backend: str) -> None:
    """Refuse a prompt-painted background on a backend that cannot inpaint: 422
    ``background-prompt-unsupported`` (:class:`InvalidInput`); nothing is queued."""
    if supports_inpaint(backend):
        return
    raise InvalidInput(
        f"a background painted from a prompt needs a backend that can inpaint (diffusers or "
        f"comfyui), and this one is {backend!r}: choose a solid, image or blur background, or "
        f"{REAL_MODEL_HINT}",
        kind="background-prompt-unsupported",
    )


def served_models(engine: Engine, backend: str, within_seconds: float) -> set[str | None] | None:
    """Models served for ``backend`` by workers seen within ``within_seconds`` (running, paused
    or stopped since); ``None`` when no such worker exists."""
    cutoff = utcnow() - dt.timedelta(seconds=within_seconds)
    with read_connection(engine) as conn:
        rows = conn.execute(
            select(Worker.model)
            .where(Worker.backend == backend, Worker.last_seen_at >= cutoff)
            .distinct()
        ).all()
    return {r.model for r in rows} if rows else None


def check_served(engine: Engine, settings: Settings, backend: str, model: str | None) -> str | None:
    """Accept ``backend``/``model`` for a new generation, or raise :class:`BackendUnavailable`.

    Returns a warning for the caller to show when the generation will wait for a worker that
    has not been seen (the deployment's default backend is never refused).
    """
    window = settings.backend_seen_seconds
    models = served_models(engine, backend, window)
    if models is None:
        if backend == settings.serving_backend and model is None:
            return (
                f"no worker has served {backend} in the last {window:.0f} s: "
                "the generation waits until one starts (posegen worker)"
            )
        raise BackendUnavailable(
            f"no worker has served backend {backend!r} in the last {window:.0f} s; "
            f"start one with POSEGEN_BACKEND={backend} posegen worker, or leave 'backend' out "
            f"to use this deployment's default ({settings.serving_backend})"
        )
    if model is not None and model not in models:
        served = ", ".join(sorted(m for m in models if m)) or "none"
        raise BackendUnavailable(
            f"no worker has served model {model!r} of backend {backend!r} in the last "
            f"{window:.0f} s (models served: {served})"
        )
    return None
