"""Admins set a pose's discovery attributes; framing is one value with the pose JSON's; the
closed sets are checked (422), and the list filters by them."""

from __future__ import annotations

from api_helpers import Api, Keys, problem_of


def test_admin_sets_attributes_and_the_list_filters_by_them(
    api: Api, keys: Keys, library: None
) -> None:
    body = {
        "name": "Bow",
        "category": "standing",
        "keypoints": [[0.5, 0.1 + i * 0.04] for i in range(18)],
        "difficulty": "advanced",
        "suitability": "female",
        "featured": True,
        "source": "studio shoot",
        "licence": "CC-BY-4.0",
        "author": "Kim",
    }
    made = api("POST", "/library/poses", key=keys.admin, json=body)
    assert made.status_code == 201, made.text
    pose = made.json()
    assert (pose["difficulty"], pose["suitability"], pose["featured"], pose["premium"]) == (
        "advanced",
        "female",
        True,
        False,
    )
    assert (pose["source"], pose["licence"], pose["author"]) == ("studio shoot", "CC-BY-4.0", "Kim")
    assert pose["framing"] == pose["keypoints"]["framing"] == "full_body"

    r = api("PATCH", f"/library/poses/{pose['id']}", key=keys.admin, json={"framing": "portrait"})
    assert r.json()["framing"] == r.json()["keypoints"]["framing"] == "portrait"
    params = {"difficulty": "advanced", "suitability": "female", "framing": "portrait"}
    found = api("GET", "/library/poses", key=keys.user, params={**params, "featured": True})
    assert [p["id"] for p in found.json()["items"]] == [pose["id"]]
    none = api("GET", "/library/poses", key=keys.user, params={**params, "featured": False})
    assert none.json()["items"] == []

    for bad in ({"difficulty": "medium"}, {"suitability": "unisex"}, {"framing": "feet"}):
        problem_of(api("PATCH", f"/library/poses/{pose['id']}", key=keys.admin, json=bad), 422)
    problem_of(api("GET", "/library/poses", key=keys.user, params={"difficulty": "hard"}), 422)
