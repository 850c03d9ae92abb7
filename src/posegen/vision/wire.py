"""The helper's wire format: one frame = a JSON header line, then ``header["bytes"]`` raw bytes.

Both sides use this module (the helper loads it from its own folder, with the standard library
only): a request is ``{"op": ..., "bytes": n, ...}`` followed by the image (RGB, 8 bits, packed
rows of ``width`` x ``height``); an answer is ``{"ok": true, ...}`` or ``{"ok": false, "error":
...}``, with the mask's raw bytes when it carries one. Raw pixels rather than an image file or
base64: the helper decodes nothing a user sent, and no codec or 4/3 blow-up sits on the path.
"""

from __future__ import annotations

import json
from typing import IO, Any

#: A header longer than this is a broken stream, not a request.
MAX_HEADER = 1 << 20
#: 64 megapixels of RGB: more than the main process ever sends (it downsizes first).
MAX_PAYLOAD = 64 * 1024 * 1024 * 3


def encode(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """One frame as bytes."""
    head = dict(header, bytes=len(payload))
    return json.dumps(head, separators=(",", ":")).encode() + b"\n" + payload


def read_frame(stream: IO[bytes]) -> tuple[dict[str, Any], bytes] | None:
    """The next frame from a blocking stream; None at a clean end of stream."""
    line = stream.readline(MAX_HEADER + 1)
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise ValueError("frame header too long or cut short")
    header = json.loads(line)
    size = int(header.get("bytes", 0))
    if not 0 <= size <= MAX_PAYLOAD:
        raise ValueError(f"frame payload of {size} bytes is out of range")
    payload = stream.read(size) if size else b""
    if len(payload) != size:
        raise ValueError("frame payload cut short")
    return header, payload
