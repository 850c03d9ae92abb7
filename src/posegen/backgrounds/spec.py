"""What a background change is: the request's shape, checked, in one canonical form.

``{"mode": "solid", "color": "#RRGGBB"}``, ``{"mode": "image", "uploadId": n}`` (an upload
the user owns), ``{"mode": "blur", "radius": px}`` (radius optional) and
``{"mode": "prompt", "prompt": "..."}`` (only where the generation's backend can inpaint).
The canonical form (lower-case colour, no absent fields) is what is stored, hashed into the
task's idempotency key and handed to the worker: the same change of a result is one task.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Engine

from posegen import backends, uploads
from posegen.exceptions import InvalidInput

MODES = ("solid", "image", "blur", "prompt")
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
MAX_RADIUS = 200.0
MAX_PROMPT = 1000


def _bad(message: str, kind: str = "invalid-background") -> InvalidInput:
    return InvalidInput(message, kind=kind)


def parse(value: Any) -> dict[str, Any]:
    """The canonical background of a request's ``background`` object (InvalidInput, kind
    ``invalid-background``, naming the field, for anything else)."""
    if not isinstance(value, Mapping):
        raise _bad("background must be an object with a mode")
    mode = value.get("mode")
    if mode not in MODES:
        raise _bad(f"background.mode must be one of {', '.join(MODES)}")
    allowed = {
        "solid": {"mode", "color"},
        "image": {"mode", "uploadId"},
        "blur": {"mode", "radius"},
        "prompt": {"mode", "prompt", "negativePrompt"},
    }[mode]
    extra = sorted(set(value) - allowed)
    if extra:
        raise _bad(f"background mode {mode} does not take {', '.join(extra)}")
    if mode == "solid":
        color = value.get("color")
        if not isinstance(color, str) or not _COLOR.fullmatch(color):
            raise _bad("background.color must be #RRGGBB (six hex digits)")
        return {"mode": "solid", "color": color.lower()}
    if mode == "image":
        upload_id = value.get("uploadId")
        if isinstance(upload_id, bool) or not isinstance(upload_id, int) or upload_id < 1:
            raise _bad("background.uploadId must be the id of one of your uploads")
        return {"mode": "image", "uploadId": upload_id}
    if mode == "blur":
        radius = value.get("radius")
        if radius is None:
            return {"mode": "blur"}
        if (
            isinstance(radius, bool)
            or not isinstance(radius, int | float)
            or not math.isfinite(radius)
            or not 0 < radius <= MAX_RADIUS
        ):
            raise _bad(f"background.radius must be a number of pixels in (0, {MAX_RADIUS:g}]")
        return {"mode": "blur", "radius": float(radius)}
    prompt = value.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > MAX_PROMPT:
        raise _bad(f"background.prompt must be 1-{MAX_PROMPT} characters")
    out: dict[str, Any] = {"mode": "prompt", "prompt": prompt.strip()}
    negative = value.get("negativePrompt")
    if negative is not None:
        if not isinstance(negative, str) or len(negative) > MAX_PROMPT:
            raise _bad(f"background.negativePrompt must be at most {MAX_PROMPT} characters")
        if negative.strip():
            out["negativePrompt"] = negative.strip()
    return out


def check(engine: Engine, spec: dict[str, Any], user_id: int, backend: str) -> None:
    """Refuse what this user cannot ask of this backend: another's (or no) upload is 404
    ``upload-not-found``; ``prompt`` where the backend cannot inpaint is 422
    ``background-prompt-unsupported``."""
    if spec["mode"] == "image":
        uploads.get(engine, int(spec["uploadId"]), user_id)
    if spec["mode"] == "prompt":
        backends.check_inpaint(backend)


def digest(spec: Mapping[str, Any]) -> str:
    """A short stable hash of the canonical form (the task and variant keys carry it)."""
    text = json.dumps(dict(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def public(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The stored form as the API shows it (internal fields left out)."""
    if spec is None:
        return None
    return {k: v for k, v in spec.items() if not k.startswith("_")}
