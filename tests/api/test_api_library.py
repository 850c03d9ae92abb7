"""The pose library: reads with filters and cursor pages, map PNGs, and admin edits."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from api_helpers import Api, Keys, png, problem_of
from PIL import Image

from posegen.controlnet.render import FACE_COLOUR, HAND_JOINT_COLOUR
from posegen.pose import pose_json

KEYPOINTS = [[0.5, 0.1], [0.5, 0.2], *([[0.4, 0.5]] * 15), None]


def test_categories_and_poses_with_filters_and_pages(api: Api, keys: Keys, library: None) -> None:
    cats = api("GET", "/library/categories", key=keys.user).json()
    assert len(cats) >= 2 and all(c["poseCount"] > 0 for c in cats)
    total = sum(c["poseCount"] for c in cats)

    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = api("GET", "/library/poses", key=keys.user, params=params).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["nextCursor"]
        if not cursor:
            break
    # The default order is popular first; nothing is used yet, so newest (highest id) first.
    assert len(seen) == total == len(set(seen)) and seen == sorted(seen, reverse=True)

    slug = cats[0]["slug"]
    in_cat = api("GET", "/library/poses", key=keys.user, params={"category": slug, "limit": 200})
    assert {p["categorySlug"] for p in in_cat.json()["items"]} == {slug}
    assert len(in_cat.json()["items"]) == cats[0]["poseCount"]

    pose = api("GET", f"/library/poses/{seen[0]}", key=keys.user).json()
    tag = pose["tags"][0]
    tagged = api("GET", "/library/poses", key=keys.user, params={"tag": tag, "limit": 200}).json()
    assert tagged["items"] and all(tag in p["tags"] for p in tagged["items"])
    word = pose["name"].split()[0].upper()
    found = api("GET", "/library/poses", key=keys.user, params={"q": word, "limit": 200}).json()
    assert pose["id"] in [p["id"] for p in found["items"]]
    none = api("GET", "/library/poses", key=keys.user, params={"q": "%_%zz"}).json()
    assert none["items"] == []


def test_map_png_is_served_for_keypoint_poses(api: Api, keys: Keys, library: None) -> None:
    pose = api("GET", "/library/poses", key=keys.user).json()["items"][0]
    r = api("GET", pose["mapUrl"], key=keys.user)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(r.content)) as img:
        assert img.format == "PNG" and img.width >= 64
    assert r.headers["etag"]
    problem_of(api("GET", "/library/poses/999999/map", key=keys.user), 404)


def test_library_maps_over_http_are_the_reference_pixels(
    api: Api, keys: Keys, library: None
) -> None:
    # The map a client downloads for a built-in pose (default 512 x 512, the canvas it was
    # authored on) is what the reference preprocessor draws, pixel for pixel.
    fixtures = Path(__file__).parents[1] / "controlnet/openpose_fixtures"
    poses = api("GET", "/library/poses", key=keys.user, params={"limit": 200}).json()["items"]
    checked = 0
    for pose in poses:
        reference = fixtures / f"library-{pose['slug']}.png"
        inside = all(
            0 < p[0] < 1 and 0 < p[1] < 1 for p in pose["keypoints"]["people"][0]["body"] if p
        )
        if not inside:
            continue  # moved onto the canvas so it is not cut: not the reference's input
        got = api("GET", pose["mapUrl"], key=keys.user)
        with Image.open(io.BytesIO(got.content)) as img, Image.open(reference) as ref:
            assert img.size == ref.size == (512, 512)
            assert (
                np.asarray(img.convert("RGB")).tobytes() == np.asarray(ref.convert("RGB")).tobytes()
            )
        checked += 1
    assert checked >= 25


def test_admin_creates_updates_and_deletes_poses(api: Api, keys: Keys, library: None) -> None:
    cat = api("GET", "/library/categories", key=keys.admin).json()[0]
    payload = {
        "name": "Hero Pose",
        "category": cat["slug"],
        "tags": ["Bold", "bold", "hero"],
        "keypoints": KEYPOINTS,
        "isPublic": False,
    }
    problem_of(api("POST", "/library/poses", key=keys.user, json=payload), 403)
    r = api("POST", "/library/poses", key=keys.admin, json=payload)
    assert r.status_code == 201, r.text
    pose = r.json()
    assert pose["slug"] == "hero-pose" and pose["tags"] == ["bold", "hero"]
    # Private: invisible (404) to users, visible to admins.
    problem_of(api("GET", f"/library/poses/{pose['id']}", key=keys.user), 404)
    assert api("GET", f"/library/poses/{pose['id']}", key=keys.admin).status_code == 200
    problem_of(api("POST", "/library/poses", key=keys.admin, json=payload), 409)

    r = api("PATCH", f"/library/poses/{pose['id']}", key=keys.admin, json={"isPublic": True})
    # Stored and returned in the one pose shape (a bare list was drawn on the default square).
    assert r.json()["isPublic"] is True and r.json()["keypoints"] == pose_json(KEYPOINTS)
    assert r.json()["keypoints"]["canvas"] == [512.0, 512.0]
    ssrf = "http://169.254.169.254/latest/meta-data/iam"
    r = api(
        "PATCH", f"/library/poses/{pose['id']}", key=keys.admin, json={"controlnetMapUrl": ssrf}
    )
    assert r.status_code == 200
    # The stored URL points at a blocked address: the map is refused, not fetched (502, no detail).
    body = problem_of(api("GET", r.json()["mapUrl"], key=keys.admin), 502)
    assert body["kind"] == "map-unavailable" and "169.254" not in body["detail"]
    url = "https://cdn.example.com/hero.png"
    r = api("PATCH", f"/library/poses/{pose['id']}", key=keys.admin, json={"controlnetMapUrl": url})
    assert r.json()["controlnetMapUrl"] == url and r.json()["keypoints"] is None
    assert api("GET", f"/library/poses/{pose['id']}", key=keys.user).status_code == 200

    upload = api(
        "POST",
        "/library/poses",
        key=keys.admin,
        data={"name": "Uploaded", "category": str(cat["id"]), "tags": '["up"]'},
        files={"map": ("m.png", png(128, 128, (0, 0, 0)), "image/png")},
    )
    assert upload.status_code == 201, upload.text
    up = upload.json()
    assert up["controlnetMapUrl"] is None and up["mapUploadId"] is not None
    assert api("GET", f"/uploads/{up['mapUploadId']}", key=keys.admin).status_code == 200
    assert up["keypoints"] is None
    got = api("GET", up["mapUrl"], key=keys.user)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"

    bad = api(
        "POST",
        "/library/poses",
        key=keys.admin,
        data={"name": "Bad", "category": cat["slug"]},
        files={"map": ("m.png", b"not a png", "image/png")},
    )
    assert problem_of(bad, 422)["kind"] == "not-an-image"
    for broken in (
        {**payload, "name": "no map", "keypoints": None},
        {**payload, "name": "short", "keypoints": KEYPOINTS[:5]},
        {**payload, "name": "out of range", "keypoints": [[2.5, 0.5]] * 18},
        {**payload, "name": "nowhere", "category": "no-such-category"},
        {**payload, "name": "both", "controlnetMapUrl": "https://cdn.example.com/m.png"},
        {**payload, "name": "file url", "keypoints": None, "controlnetMapUrl": "file:///etc/x"},
        {**payload, "name": "null description", "description": None},
    ):
        problem_of(api("POST", "/library/poses", key=keys.admin, json=broken), 422)
    # A null slug is made from the name, as an absent one is; a null name is refused.
    r = api(
        "POST",
        "/library/poses",
        key=keys.admin,
        json={**payload, "name": "Null Slug", "slug": None},
    )
    assert r.status_code == 201 and r.json()["slug"] == "null-slug", r.text
    problem_of(
        api("PATCH", f"/library/poses/{r.json()['id']}", key=keys.admin, json={"name": None}), 422
    )
    problem_of(
        api("PATCH", f"/library/poses/{r.json()['id']}", key=keys.admin, json={"slug": None}), 422
    )

    problem_of(api("DELETE", f"/library/poses/{pose['id']}", key=keys.user), 403)
    assert api("DELETE", f"/library/poses/{pose['id']}", key=keys.admin).status_code == 204
    problem_of(api("GET", f"/library/poses/{pose['id']}", key=keys.admin), 404)
    problem_of(api("DELETE", f"/library/poses/{pose['id']}", key=keys.admin), 404)


def test_poses_with_canvas_framing_hands_and_face(api: Api, keys: Keys, library: None) -> None:
    cat = api("GET", "/library/categories", key=keys.user).json()[0]
    body = [[0.5, 0.1 + i * 0.04, 0.9] for i in range(18)]
    hand = [[0.3 + (i % 5) * 0.01, 0.5 + (i // 5) * 0.01, 1.0] for i in range(21)]
    face = [[0.45 + (i % 10) * 0.01, 0.08 + (i // 10) * 0.005, 1.0] for i in range(70)]
    pose = {
        "aspect": 0.75,
        "framing": "half_body",
        "body": body,
        "hands": [hand, None],
        "face": face,
    }
    r = api(
        "POST",
        "/library/poses",
        key=keys.admin,
        json={"name": "Full", "category": cat["slug"], "keypoints": pose},
    )
    assert r.status_code == 201, r.text
    stored = r.json()["keypoints"]
    assert stored["canvas"] == [0.75, 1.0] and stored["framing"] == "half_body"
    person = stored["people"][0]
    assert (
        len(person["hands"][0]) == 21 and person["hands"][1] is None and len(person["face"]) == 70
    )
    # The map is drawn with the hands and the face (openpose_full).
    got = api("GET", r.json()["mapUrl"], key=keys.user)
    assert got.status_code == 200
    pixels = np.asarray(Image.open(io.BytesIO(got.content)).convert("RGB"))
    for colour in (HAND_JOINT_COLOUR, FACE_COLOUR):
        assert (pixels == np.array(colour, dtype=np.uint8)).all(axis=2).any(), colour

    # Today's shapes still work on a patch: one person at the top level, no canvas.
    r = api(
        "PATCH",
        f"/library/poses/{r.json()['id']}",
        key=keys.admin,
        json={"keypoints": {"body": body}},
    )
    assert r.status_code == 200, r.text
    assert (
        r.json()["keypoints"]["canvas"] == [512.0, 512.0]
        and "hands" not in r.json()["keypoints"]["people"][0]
    )

    for bad, where in (
        ({**pose, "framing": "close-up"}, "pose.framing"),
        ({**pose, "hands": [hand[:20], None]}, "pose.hands[0]"),
        ({**pose, "face": face[:68]}, "pose.face"),
        ({**pose, "canvas": [512, 512]}, "pose"),
        ({"people": [{"body": body[:17]}]}, "pose.people[0].body"),
    ):
        problem = problem_of(
            api(
                "POST",
                "/library/poses",
                key=keys.admin,
                json={"name": "Bad", "category": cat["slug"], "keypoints": bad},
            ),
            422,
        )
        assert problem["kind"] == "invalid-pose" and problem["detail"].startswith(where), problem
