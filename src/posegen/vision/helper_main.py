"""The vision helper process: mediapipe's pose, hand, face-detection and selfie-segmentation
models behind the frames of ``wire.py`` on stdin/stdout.

Run by :mod:`posegen.vision.client` with the vision environment's Python (``make
install-vision``: mediapipe 0.10.21 needs numpy<2 and protobuf<5, which the main environment
cannot have). It imports numpy, OpenCV and mediapipe only -- never posegen -- and it decodes no
file: the main process checks and decodes the photo and sends RGB pixels. One request at a time;
a failed request answers ``ok: false`` and the helper goes on; end of stdin ends it.

Ops (header fields; the payload is ``height`` x ``width`` x 3 RGB bytes):

* ``pose`` -> ``people``: at most one person, ``{"landmarks": 33 x [x, y, visibility],
  "hands": [left 21 x [x, y] | null, right ...], "face": 478 x [x, y] | null}`` normalised to
  the whole image (the face: mediapipe's refined face mesh, irises last); ``faces``: how many
  faces the full-range face detector saw (with two or more, the pose is taken from a crop
  around the largest face, so it belongs to the largest person); ``ms``: model time.
* ``people`` (``limit``) -> ``people``: every person found, up to ``limit``, each as above
  (see :func:`people` for how they are found); ``faces`` as above.
* ``segment`` -> the selfie-segmentation mask as ``height`` x ``width`` bytes (0..255).
* ``detect`` -> both.
* ``ping`` (``sleepMs``) -> nothing, after that long.

Every answer carries the helper's ``pid``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: Around the largest of several faces: this many face widths each side, face heights above.
CROP_SIDE_FACES = 2.5
CROP_ABOVE_FACES = 1.0
MIN_FACE_SCORE = 0.5
MAX_SLEEP_MS = 60_000.0
#: A landmark this visible counts (the main process's COCO-18 rule).
MIN_VISIBILITY = 0.5
#: A found person is blanked out this much beyond its landmarks' box, each side.
BLANK_MARGIN = 0.25
#: A window at least this blanked out holds no one new: skipped.
MAX_BLANK_WINDOW = 0.9
RECENTRE_LOOKS = 2


class Models:
    """The mediapipe graphs, each built on first use and kept for the life of the helper."""

    def __init__(self) -> None:
        import mediapipe as mp

        self.mp = mp
        self._holistic: Any = None
        self._faces: Any = None
        self._selfie: Any = None

    def holistic(self) -> Any:
        if self._holistic is None:
            # model_complexity 1 is the one whose weights ship in the wheel (0 and 2 download);
            # refined face landmarks add the irises (468..477): the face's two pupils.
            self._holistic = self.mp.solutions.holistic.Holistic(
                static_image_mode=True, model_complexity=1, refine_face_landmarks=True
            )
        return self._holistic

    def faces(self) -> Any:
        if self._faces is None:
            self._faces = self.mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=MIN_FACE_SCORE
            )
        return self._faces

    def selfie(self) -> Any:
        if self._selfie is None:
            self._selfie = self.mp.solutions.selfie_segmentation.SelfieSegmentation(
                model_selection=0
            )
        return self._selfie


def _image(header: dict[str, Any], payload: bytes) -> Any:
    import numpy as np

    width, height = int(header["width"]), int(header["height"])
    if width <= 0 or height <= 0 or len(payload) != width * height * 3:
        raise ValueError(f"payload is not {width} x {height} RGB pixels")
    return np.frombuffer(payload, dtype=np.uint8).reshape(height, width, 3)


def _face_boxes(models: Models, rgb: Any) -> list[tuple[float, float, float, float]]:
    found = models.faces().process(rgb)
    boxes = []
    for det in found.detections or ():
        box = det.location_data.relative_bounding_box
        boxes.append((box.xmin, box.ymin, box.width, box.height))
    return boxes


def _crop_around(
    face: tuple[float, float, float, float], width: int, height: int
) -> tuple[int, int, int, int]:
    fx, fy, fw, fh = face
    x0 = max(0, int((fx - CROP_SIDE_FACES * fw) * width))
    x1 = min(width, int((fx + fw + CROP_SIDE_FACES * fw) * width) + 1)
    y0 = max(0, int((fy - CROP_ABOVE_FACES * fh) * height))
    return x0, y0, x1, height


def _person_in(models: Models, rgb: Any, box: tuple[int, int, int, int]) -> dict[str, Any] | None:
    """Holistic on ``rgb[box]`` (x0, y0, x1, y1 in pixels), its points normalised to ``rgb``."""
    import numpy as np

    height, width = rgb.shape[:2]
    x0, y0, x1, y1 = box
    cw, ch = x1 - x0, y1 - y0
    found = models.holistic().process(np.ascontiguousarray(rgb[y0:y1, x0:x1]))
    if found.pose_landmarks is None:
        return None

    def point(lm: Any) -> list[float]:
        return [(x0 + lm.x * cw) / width, (y0 + lm.y * ch) / height]

    return {
        "landmarks": [[*point(lm), lm.visibility] for lm in found.pose_landmarks.landmark],
        "hands": [
            None if hand is None else [point(lm) for lm in hand.landmark]
            for hand in (found.left_hand_landmarks, found.right_hand_landmarks)
        ],
        "face": None
        if found.face_landmarks is None
        else [point(lm) for lm in found.face_landmarks.landmark],
    }


def _face_crops(
    faces: list[tuple[float, float, float, float]], width: int, height: int
) -> list[tuple[int, int, int, int]]:
    """One crop per face (faces sorted left to right): around it, and ending halfway to the
    next face on either side, so that it holds one person."""
    centres = [fx + fw / 2 for fx, _, fw, _ in faces]
    crops = []
    for i, face in enumerate(faces):
        x0, y0, x1, y1 = _crop_around(face, width, height)
        if i > 0:
            x0 = max(x0, int((centres[i - 1] + centres[i]) / 2 * width))
        if i + 1 < len(faces):
            x1 = min(x1, int((centres[i] + centres[i + 1]) / 2 * width) + 1)
        crops.append((x0, y0, x1, y1))
    return crops


def pose(models: Models, rgb: Any) -> dict[str, Any]:
    height, width = rgb.shape[:2]
    faces = sorted(_face_boxes(models, rgb))
    box = (0, 0, width, height)
    if len(faces) >= 2:
        largest = max(range(len(faces)), key=lambda i: faces[i][2] * faces[i][3])
        box = _face_crops(faces, width, height)[largest]
    person = _person_in(models, rgb, box)
    return {"people": [] if person is None else [person], "faces": len(faces)}


def _column_of(person: dict[str, Any], width: int) -> tuple[int, int]:
    """The pixel columns a person takes: its visible body landmarks' span, a quarter of it wider
    each side. Found people are blanked out over the photo's whole height (a cap above the
    points, the body below them), on the assumption that people stand side by side."""
    seen = [x for x, _, v in person["landmarks"] if v >= MIN_VISIBILITY]
    if not seen:
        seen = [x for x, _, _ in person["landmarks"]]
    xs = [min(max(x, 0.0), 1.0) * width for x in seen]
    margin = BLANK_MARGIN * (max(xs) - min(xs))
    return max(0, int(min(xs) - margin)), min(width, int(max(xs) + margin) + 1)


def _windows(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Square windows the photo's shorter side across, half a window apart, edge to edge."""
    side = min(width, height)

    def starts(length: int) -> list[int]:
        found = list(range(0, length - side + 1, max(1, side // 2)))
        if found[-1] != length - side:
            found.append(length - side)
        return found

    return [(x, y, x + side, y + side) for y in starts(height) for x in starts(width)]


def _window_around(column: tuple[int, int], side: int, width: int) -> tuple[int, int]:
    centre = (column[0] + column[1]) // 2
    x0 = min(max(0, centre - side // 2), width - side)
    return x0, x0 + side


def people(models: Models, rgb: Any, limit: int) -> dict[str, Any]:
    """Every person, up to ``limit``: one crop per face first (each crop ends halfway to the
    next face, so it holds one person), then square windows over what those people left
    uncovered (people whose face the detector misses: drawn figures, backs), each person found
    there looked at again in a window centred on it; found people are blanked out as they come
    so that no one is found twice."""
    import numpy as np

    height, width = rgb.shape[:2]
    faces = sorted(_face_boxes(models, rgb))
    found: list[dict[str, Any]] = []
    blank = np.zeros((height, width), dtype=bool)
    for crop in _face_crops(faces, width, height)[:limit]:
        person = _person_in(models, rgb, crop)
        if person is not None:
            found.append(person)
            c0, c1 = _column_of(person, width)
            blank[:, c0:c1] = True
    rest = rgb.copy()
    fill = np.median(rgb.reshape(-1, 3), axis=0).astype(np.uint8)
    rest[blank] = fill
    side = min(width, height)
    for window in _windows(width, height):
        if len(found) >= limit:
            break
        wx0, wy0, wx1, wy1 = window
        if blank[wy0:wy1, wx0:wx1].mean() > MAX_BLANK_WINDOW:
            continue
        person = _person_in(models, rest, window)
        if person is None:
            continue
        # Seen at a window's edge, a person is often cut: look again with it in the middle
        # (twice: the first look's middle is that of the cut person).
        for _ in range(RECENTRE_LOOKS):
            x0, x1 = _window_around(_column_of(person, width), side, width)
            person = _person_in(models, rest, (x0, wy0, x1, wy1)) or person
        if not any(v >= MIN_VISIBILITY for _, _, v in person["landmarks"]):
            continue
        found.append(person)
        c0, c1 = _column_of(person, width)
        blank[:, c0:c1] = True
        rest[:, c0:c1] = fill
    return {"people": found, "faces": len(faces)}


def segment(models: Models, rgb: Any) -> bytes:
    import numpy as np

    mask = models.selfie().process(rgb).segmentation_mask
    return bytes(np.clip(mask * 255.0 + 0.5, 0, 255).astype(np.uint8).tobytes())


def handle(models: Models, header: dict[str, Any], payload: bytes) -> tuple[dict[str, Any], bytes]:
    op = header.get("op")
    if op == "ping":
        # ``sleepMs``: hold the helper that long (the pool's tests use it to catch one busy).
        time.sleep(min(float(header.get("sleepMs") or 0), MAX_SLEEP_MS) / 1000.0)
        return {"ok": True, "pid": os.getpid()}, b""
    if op not in ("pose", "people", "segment", "detect"):
        raise ValueError(f"unknown op {op!r}")
    rgb = _image(header, payload)
    started = time.perf_counter()
    answer: dict[str, Any] = {"ok": True, "pid": os.getpid()}
    mask = b""
    if op in ("pose", "detect"):
        answer.update(pose(models, rgb))
    if op == "people":
        answer.update(people(models, rgb, max(1, int(header.get("limit") or 1))))
    if op in ("segment", "detect"):
        mask = segment(models, rgb)
        answer["maskWidth"], answer["maskHeight"] = rgb.shape[1], rgb.shape[0]
    answer["ms"] = (time.perf_counter() - started) * 1000.0
    return answer, mask


def main() -> int:
    # The frames own the real stdout; anything a native library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # Last, not first: run with -I the script's folder is not on the path, and the package's
    # other modules must never shadow a library's imports.
    sys.path.append(os.path.dirname(os.path.abspath(__file__)))
    import wire  # beside this file; standard library only

    try:
        import cv2
        import mediapipe
        import numpy

        models = Models()
        hello = {
            "ok": True,
            "versions": {
                "mediapipe": mediapipe.__version__,
                "numpy": numpy.__version__,
                "opencv": cv2.__version__,
            },
            "pid": os.getpid(),
        }
    except Exception as exc:  # a broken vision environment: say so, then stop
        out.write(wire.encode({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        out.flush()
        return 3
    out.write(wire.encode(hello))
    out.flush()
    stdin = sys.stdin.buffer
    while True:
        frame = wire.read_frame(stdin)
        if frame is None:
            return 0
        header, payload = frame
        try:
            answer, data = handle(models, header, payload)
        except Exception as exc:
            answer, data = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}, b""
        out.write(wire.encode(answer, data))
        out.flush()


if __name__ == "__main__":
    sys.exit(main())
