"""The vision helper process: mediapipe's pose, hand, face-detection and selfie-segmentation
models behind the frames of ``wire.py`` on stdin/stdout.

Run by :mod:`posegen.vision.client` with the vision environment's Python (``make
install-vision``: mediapipe 0.10.21 needs numpy<2 and protobuf<5, which the main environment
cannot have). It imports numpy, OpenCV and mediapipe only -- never posegen -- and it decodes no
file: the main process checks and decodes the photo and sends RGB pixels. One request at a time;
a failed request answers ``ok: false`` and the helper goes on; end of stdin ends it.

Ops (header fields; the payload is ``height`` x ``width`` x 3 RGB bytes):

* ``pose`` -> ``people``: at most one person, ``{"landmarks": 33 x [x, y, visibility],
  "hands": [left 21 x [x, y] | null, right ...]}`` normalised to the whole image; ``faces``: how
  many faces the full-range face detector saw (with two or more, the pose is taken from a crop
  around the largest face, so it belongs to the largest person); ``ms``: model time.
* ``segment`` -> the selfie-segmentation mask as ``height`` x ``width`` bytes (0..255).
* ``detect`` -> both.
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
            # model_complexity 1 is the one whose weights ship in the wheel (0 and 2 download).
            self._holistic = self.mp.solutions.holistic.Holistic(
                static_image_mode=True, model_complexity=1, refine_face_landmarks=False
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


def pose(models: Models, rgb: Any) -> dict[str, Any]:
    height, width = rgb.shape[:2]
    faces = _face_boxes(models, rgb)
    x0, y0, x1, y1 = 0, 0, width, height
    if len(faces) >= 2:
        largest = max(faces, key=lambda b: b[2] * b[3])
        x0, y0, x1, y1 = _crop_around(largest, width, height)
    import numpy as np

    crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    cw, ch = x1 - x0, y1 - y0
    found = models.holistic().process(crop)

    def point(lm: Any) -> list[float]:
        return [(x0 + lm.x * cw) / width, (y0 + lm.y * ch) / height]

    people = []
    if found.pose_landmarks is not None:
        landmarks = [[*point(lm), lm.visibility] for lm in found.pose_landmarks.landmark]
        hands = [
            None if hand is None else [point(lm) for lm in hand.landmark]
            for hand in (found.left_hand_landmarks, found.right_hand_landmarks)
        ]
        people.append({"landmarks": landmarks, "hands": hands})
    return {"people": people, "faces": len(faces)}


def segment(models: Models, rgb: Any) -> bytes:
    import numpy as np

    mask = models.selfie().process(rgb).segmentation_mask
    return bytes(np.clip(mask * 255.0 + 0.5, 0, 255).astype(np.uint8).tobytes())


def handle(models: Models, header: dict[str, Any], payload: bytes) -> tuple[dict[str, Any], bytes]:
    op = header.get("op")
    if op == "ping":
        return {"ok": True}, b""
    if op not in ("pose", "segment", "detect"):
        raise ValueError(f"unknown op {op!r}")
    rgb = _image(header, payload)
    started = time.perf_counter()
    answer: dict[str, Any] = {"ok": True}
    mask = b""
    if op in ("pose", "detect"):
        answer.update(pose(models, rgb))
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
