"""Images people upload (project subjects, pose maps): validated, re-encoded, stored by id.

The stored name is derived from the owning row's id, never from the client's file name, so an
upload cannot choose where it lands. Files are published atomically (temp file + rename).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from posegen.config import Settings
from posegen.controlnet import validate
from posegen.controlnet.localfiles import resolve_upload
from posegen.exceptions import FetchError, InvalidInput

SUBJECTS = "subjects"
MAPS = "maps"


def validated_png(settings: Settings, data: bytes) -> bytes:
    """Decode untrusted bytes (PNG, JPEG, WebP; pixel cap, bomb check) and re-encode as RGB PNG."""
    if len(data) > settings.upload_max_bytes:
        raise InvalidInput(
            f"upload is over the {settings.upload_max_bytes}-byte limit", kind="upload-too-large"
        )
    if not data:
        raise FetchError("the upload is empty", kind="not-an-image")
    image = validate.decode(data, settings.image_max_pixels)
    try:
        return validate.to_png(validate.to_rgb(image))
    finally:
        image.close()


def store(settings: Settings, folder: str, name: str, png: bytes) -> str:
    """Write ``png`` to ``<uploads>/<folder>/<name>.png``; returns its ``/uploads/...`` path."""
    target_dir = settings.effective_uploads_dir / folder
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=".incoming-", suffix=".png")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(png)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target_dir / f"{name}.png")
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return f"/uploads/{folder}/{name}.png"


def remove(settings: Settings, reference: str | None, folder: str) -> None:
    """Delete an upload this module stored in ``folder``; anything else is left alone."""
    if not reference or not reference.startswith(f"/uploads/{folder}/"):
        return
    try:
        path: Path = resolve_upload(settings.effective_uploads_dir, reference)
    except FetchError:
        return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
