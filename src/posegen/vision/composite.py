"""Putting a person on a new background: ``change_background(image, mask, mode, params)``.

Modes: ``solid`` (``{"color": "#RRGGBB"}``), ``image`` (``{"image": bytes}``: a backdrop the
caller has already checked the user owns; scaled to cover and centre-cropped) and ``blur``
(``{"radius": px}``: the photo's own background, blurred with the person cut out first so they
leave no smear). Every mode takes ``feather`` (px, the edge's softness; default about 0.3 % of
the diagonal) and ``decontaminate`` (default true).

The edge: the model's soft mask is tightened (smoothstep 0.25..0.75) and then feathered with a
Gaussian, so hair and shoulders fade over a couple of pixels instead of stepping. A pixel on the
edge is a mix of the person and the *old* background; pasted as it is, the old colour shows as a
fringe on the new one. Decontamination solves ``I = a F + (1 - a) B`` for the person's colour
``F``, with ``B`` the old background's local colour (masked blur), and where ``a`` is too small
for that to be stable it uses the person's nearby interior colour instead. Pure numpy and OpenCV:
it runs in the main process (no mediapipe), in an API process or a worker.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageOps

from posegen.exceptions import FetchError, InvalidInput

if TYPE_CHECKING:
    import numpy as np

MODES = ("solid", "image", "blur")
_COLOR = re.compile(r"^#([0-9a-fA-F]{6})$")
#: Mask values are person-ness 0..255; the model's soft band is tightened to this range.
_TIGHTEN = (0.25, 0.75)


def change_background(
    image_bytes: bytes,
    mask: np.ndarray | bytes,
    mode: str,
    params: Mapping[str, Any] | None = None,
) -> bytes:
    """The image with its background replaced, as PNG bytes.

    ``mask``: the person mask (uint8 0..255, any size: scaled to the image; or a grayscale PNG),
    e.g. :func:`posegen.vision.segment`'s. Raises :class:`InvalidInput` (``invalid-background``)
    for an unknown mode or bad parameters.
    """
    import cv2
    import numpy as np

    params = dict(params or {})
    if mode not in MODES:
        _bad(f"background mode must be one of {', '.join(MODES)}, not {mode!r}")
    image = _decode(image_bytes, "image")
    height, width = image.shape[:2]
    alpha = _alpha(mask, width, height, _feather(params, width, height))
    a = alpha[..., None]
    if mode == "solid":
        backdrop = np.empty_like(image)
        backdrop[...] = np.asarray(parse_color(params.get("color")), dtype=np.float32) / 255.0
    elif mode == "image":
        if not isinstance(params.get("image"), bytes | bytearray):
            _bad("mode image needs the backdrop image's bytes")
        backdrop = _cover(_decode(bytes(params["image"]), "backdrop"), width, height)
    else:
        radius = params.get("radius", max(2.0, 0.02 * math.hypot(width, height)))
        if isinstance(radius, bool) or not isinstance(radius, int | float) or radius <= 0:
            _bad("blur radius must be a positive number of pixels")
        backdrop = _masked_blur(image, 1.0 - alpha, float(min(radius, 200.0)))
    person = _decontaminated(image, alpha) if params.get("decontaminate", True) else image
    out = a * person + (1.0 - a) * backdrop
    pixels = np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)
    ok, png = cv2.imencode(".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    if not ok:  # pragma: no cover - imencode fails only on bad arrays
        raise FetchError("the composite could not be encoded", kind="encode-failed")
    return bytes(png.tobytes())


def parse_color(value: Any) -> tuple[int, int, int]:
    """``#RRGGBB`` as an RGB triple."""
    found = _COLOR.match(value) if isinstance(value, str) else None
    if found is None:
        raise InvalidInput(f"color must be #RRGGBB, not {value!r}", kind="invalid-background")
    hex6 = found.group(1)
    return int(hex6[0:2], 16), int(hex6[2:4], 16), int(hex6[4:6], 16)


def _bad(message: str) -> Any:
    raise InvalidInput(message, kind="invalid-background")


def _decode(data: bytes, what: str) -> np.ndarray:
    import numpy as np

    try:
        with Image.open(io.BytesIO(data)) as im:
            rgb = ImageOps.exif_transpose(im).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise FetchError(f"the {what} could not be decoded: {exc}", kind="not-an-image") from exc
    return np.asarray(rgb, dtype=np.float32) / 255.0


def _feather(params: Mapping[str, Any], width: int, height: int) -> float:
    feather = params.get("feather", max(1.0, 0.003 * math.hypot(width, height)))
    if isinstance(feather, bool) or not isinstance(feather, int | float) or not 0 <= feather <= 50:
        _bad("feather must be a number of pixels from 0 to 50")
    return float(feather)


def _alpha(mask: np.ndarray | bytes, width: int, height: int, feather: float) -> np.ndarray:
    import cv2
    import numpy as np

    if isinstance(mask, bytes | bytearray):
        try:
            with Image.open(io.BytesIO(mask)) as im:
                mask = np.asarray(im.convert("L"))
        except (OSError, ValueError) as exc:
            raise FetchError(f"the mask could not be decoded: {exc}", kind="not-an-image") from exc
    m = np.asarray(mask)
    if m.ndim != 2 or m.size == 0:
        _bad("the mask must be one grayscale channel")
    a: np.ndarray = m.astype(np.float32) / (255.0 if m.dtype == np.uint8 else 1.0)
    if a.shape != (height, width):
        a = cv2.resize(a, (width, height), interpolation=cv2.INTER_LINEAR)
    lo, hi = _TIGHTEN
    t = np.clip((a - lo) / (hi - lo), 0.0, 1.0)
    a = t * t * (3.0 - 2.0 * t)
    if feather > 0:
        a = cv2.GaussianBlur(a, (0, 0), sigmaX=feather)
    return np.clip(a, 0.0, 1.0)


def _masked_blur(image: np.ndarray, weight: np.ndarray, sigma: float) -> np.ndarray:
    """The Gaussian-weighted mean colour of ``image`` where ``weight`` is high."""
    import cv2
    import numpy as np

    w = weight.astype(np.float32)
    num = cv2.GaussianBlur(image * w[..., None], (0, 0), sigmaX=sigma)
    den = cv2.GaussianBlur(w, (0, 0), sigmaX=sigma)[..., None]
    fallback = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma)
    blurred: np.ndarray = np.where(den > 1e-3, num / np.maximum(den, 1e-3), fallback)
    return blurred


def _decontaminated(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The person's own colour on the edge band (see the module docstring)."""
    import numpy as np

    edge = (alpha > 0.002) & (alpha < 0.998)
    if not edge.any():
        return image
    h, w = alpha.shape
    sigma = max(3.0, 0.01 * math.hypot(w, h))
    old_bg = _masked_blur(image, (alpha < 0.05).astype(np.float32), sigma)
    interior = _masked_blur(image, (alpha > 0.95).astype(np.float32), sigma)
    a = alpha[..., None]
    solved = np.clip((image - (1.0 - a) * old_bg) / np.maximum(a, 1e-3), 0.0, 1.0)
    trust = np.clip((a - 0.2) / 0.6, 0.0, 1.0)
    person = trust * solved + (1.0 - trust) * interior
    return np.where(edge[..., None], person, image)


def _cover(backdrop: np.ndarray, width: int, height: int) -> np.ndarray:
    """``backdrop`` scaled to cover ``width`` x ``height`` and centre-cropped."""
    import cv2

    bh, bw = backdrop.shape[:2]
    scale = max(width / bw, height / bh)
    size = (max(width, round(bw * scale)), max(height, round(bh * scale)))
    scaled = cv2.resize(backdrop, size, interpolation=cv2.INTER_AREA)
    x0, y0 = (size[0] - width) // 2, (size[1] - height) // 2
    return scaled[y0 : y0 + height, x0 : x0 + width]
