"""Checking an uploaded image before it is kept, with bounded memory.

The bytes are stored as they came once a full decode has proved them a PNG, JPEG or WebP within
the pixel cap: a JPEG stays a JPEG (re-encoding a 15 MB photo as PNG made it 50 MB, over the read
cap). A JPEG is decoded at 1/8 scale (libjpeg still reads every entropy-coded block, so truncated
or corrupt data is still caught) and at most ``upload_decode_concurrency`` decodes run at once in
a process, so parallel uploads cannot multiply the decoded pixels in memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from posegen.config import Settings
from posegen.controlnet import validate
from posegen.exceptions import FetchError, InvalidInput, UploadsBusy

#: Pillow format -> (content type, file extension).
FORMATS = {
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpg"),
    "WEBP": ("image/webp", "webp"),
}
EXTENSIONS = {ctype: ext for ctype, ext in FORMATS.values()}
#: How long an upload waits for a decode slot before the client is told to retry.
DECODE_WAIT_SECONDS = 30.0

_gates: dict[int, threading.BoundedSemaphore] = {}
_gates_lock = threading.Lock()


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    sha256: str
    width: int
    height: int
    content_type: str

    @property
    def size(self) -> int:
        return len(self.data)


def check_image(settings: Settings, data: bytes) -> CheckedImage:
    """Validate untrusted bytes (size, format, pixel cap, bombs, truncation) for storing as-is."""
    if len(data) > settings.upload_max_bytes:
        raise InvalidInput(
            f"upload is over the {settings.upload_max_bytes}-byte limit", kind="upload-too-large"
        )
    if not data:
        raise FetchError("the upload is empty", kind="not-an-image")
    with decode_slot(settings):
        fmt, width, height = validate.check(data, settings.image_max_pixels)
    if fmt not in FORMATS:  # decode() admits only these; a guard against a Pillow change
        raise FetchError("the data is not a PNG, JPEG or WebP image", kind="not-an-image")
    return CheckedImage(data, hashlib.sha256(data).hexdigest(), width, height, FORMATS[fmt][0])


@contextlib.contextmanager
def decode_slot(settings: Settings) -> Iterator[None]:
    """Hold one of the process's decode slots (``POSEGEN_UPLOAD_DECODE_CONCURRENCY``)."""
    gate = _gate(settings.upload_decode_concurrency)
    if not gate.acquire(timeout=DECODE_WAIT_SECONDS):
        raise UploadsBusy("too many uploads are being checked right now; try again shortly")
    try:
        yield
    finally:
        gate.release()


def _gate(limit: int) -> threading.BoundedSemaphore:
    # Process-wide on purpose: the memory it protects is the process's.
    with _gates_lock:
        gate = _gates.get(limit)
        if gate is None:
            gate = _gates[limit] = threading.BoundedSemaphore(limit)
        return gate
