"""Every person in a photo (``extract_all``): composites of the test photo side by side and of
drawn figures, checked against the same photo's single-person keypoints shifted into place;
largest first; none in an empty picture; one (not more) in the photo alone."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image
from vision_helpers import drawn_figure, encode

from posegen import vision
from posegen.config import Settings
from posegen.pose import parse_pose

#: "Within a few percent": distance to the single-person point, as a fraction of one tile's
#: width (measured: at most 2.1 % over every BlazePose landmark of the photo's composites).
TOLERANCE = 0.04


def _row(tiles: Sequence[Image.Image]) -> Image.Image:
    """The tiles side by side, bottom-aligned, on grey."""
    width, height = sum(t.width for t in tiles), max(t.height for t in tiles)
    scene = Image.new("RGB", (width, height), (128, 128, 128))
    x = 0
    for tile in tiles:
        scene.paste(tile, (x, height - tile.height))
        x += tile.width
    return scene


def _check_shifted(
    found: vision.Extraction, single: vision.Extraction, tiles: int, tile: tuple[int, int]
) -> None:
    """Each person found is the single-person pose moved into its own tile, one per tile."""
    assert found.pose is not None and len(found.pose.people) == tiles
    reference = single.keypoints()
    slots = []
    scene_w, scene_h = found.width, found.height
    for person in found.people():
        points = person["keypoints"]
        nose = points[0] if points[0] is not None else points[1]
        assert nose is not None
        slot = int(nose[0] * scene_w // tile[0])
        slots.append(slot)
        compared = 0
        for ref, got in zip(reference, points, strict=True):
            if ref is None:
                continue
            assert got is not None, (slot, points)
            gx = got[0] * scene_w - slot * tile[0]
            gy = got[1] * scene_h - (scene_h - tile[1])
            error = math.hypot(gx / tile[0] - ref[0], (gy / tile[1] - ref[1]) * tile[1] / tile[0])
            assert error <= TOLERANCE, (slot, error)
            compared += 1
        assert compared >= 8
        # The box holds every point of the person, and only its own tile.
        x0, _, x1, _ = person["box"]
        assert slot * tile[0] <= x0 * scene_w + 2 and x1 * scene_w <= (slot + 1) * tile[0] + 2
    assert sorted(slots) == list(range(tiles))
    assert found.people_seen == tiles
    assert "several-people" not in [w.kind for w in found.warnings]


def test_two_and_three_people_on_the_photo(vision_settings: Settings, photo: bytes) -> None:
    person = Image.open(io.BytesIO(photo)).convert("RGB")
    single = vision.extract(vision_settings, photo)
    for tiles in (2, 3):
        found = vision.extract_all(vision_settings, encode(_row([person] * tiles), "PNG"))
        _check_shifted(found, single, tiles, person.size)
        # Each one's partial body is named, and the pose of them all is a valid pose.
        partial = [w.message for w in found.warnings if w.kind == "partial-body"]
        assert [m.split(":")[0] for m in partial] == [f"person {i + 1}" for i in range(tiles)]
        assert found.pose is not None and parse_pose(found.pose.to_json()) == found.pose
        assert all(p["face"] is not None and len(p["face"]) == 70 for p in found.people())


def test_drawn_figures_without_faces_are_found_too(vision_settings: Settings) -> None:
    figure = drawn_figure()
    single = vision.extract(vision_settings, encode(figure))
    for tiles in (2, 3):
        found = vision.extract_all(vision_settings, encode(_row([figure] * tiles)))
        _check_shifted(found, single, tiles, figure.size)
        assert found.warnings == ()
        assert found.pose is not None and found.pose.framing == "full_body"


def test_largest_first(vision_settings: Settings, photo: bytes) -> None:
    person = Image.open(io.BytesIO(photo)).convert("RGB")
    small = person.resize((400, 469))
    found = vision.extract_all(vision_settings, encode(_row([small, person]), "JPEG"))
    people = found.people()
    assert len(people) == 2

    def area(box: list[float]) -> float:
        return (box[2] - box[0]) * (box[3] - box[1])

    assert area(people[0]["box"]) > area(people[1]["box"])
    assert people[0]["box"][0] * found.width >= small.width - 2  # the big one is on the right
    # The default extraction picks the same person and says there were two.
    largest = vision.extract(vision_settings, encode(_row([small, person]), "JPEG"))
    assert largest.keypoints()[0] is not None and people[0]["keypoints"][0] is not None
    assert abs(largest.keypoints()[0][0] - people[0]["keypoints"][0][0]) < 0.01  # type: ignore[index]
    assert "several-people" in [w.kind for w in largest.warnings]


def test_one_person_is_one_and_no_person_is_an_empty_list(
    vision_settings: Settings, photo: bytes
) -> None:
    alone = vision.extract_all(vision_settings, photo)
    assert len(alone.people()) == 1 and alone.people_seen == 1
    assert alone.keypoints() == vision.extract(vision_settings, photo).keypoints()
    sky = Image.linear_gradient("L").resize((600, 300)).convert("RGB")
    nobody = vision.extract_all(vision_settings, encode(sky, "JPEG"))
    assert nobody.people() == [] and nobody.pose is None and nobody.people_seen == 0
    assert [w.kind for w in nobody.warnings] == ["no-person"]
