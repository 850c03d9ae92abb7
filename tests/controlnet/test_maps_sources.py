"""Map sources: canonical URLs and cache keys."""

from __future__ import annotations

import hashlib

import pytest

from posegen.controlnet import MapSource, canonical_url
from posegen.exceptions import FetchError, InvalidInput


@pytest.mark.parametrize(
    ("raw", "canon"),
    [
        ("HTTP://Example.COM:80/a/b.png", "http://example.com/a/b.png"),
        ("https://example.com:443", "https://example.com/"),
        ("https://example.com:8443/x", "https://example.com:8443/x"),
        ("http://example.com/a/./b/../c.png#frag", "http://example.com/a/c.png"),
        ("http://example.com/%7euser/%41b%2f?q=%7e%2f", "http://example.com/~user/Ab%2F?q=~%2F"),
        ("http://example.com/a b.png", "http://example.com/a%20b.png"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("http://example.com./x", "http://example.com/x"),
    ],
)
def test_canonical_url(raw: str, canon: str) -> None:
    assert canonical_url(raw) == canon


def test_equivalent_urls_share_a_key_and_the_key_is_sha256_of_the_canonical_url() -> None:
    a = MapSource.from_url("HTTP://Example.com:80/pose.png#x")
    b = MapSource.from_url("http://example.com/pose.png")
    assert a.url_key() == b.url_key()
    assert a.url_key() == hashlib.sha256(b"http://example.com/pose.png").hexdigest()
    assert MapSource.from_url("http://example.com/pose2.png").url_key() != a.url_key()


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://example.com/", "ftp://example.com/x.png", "data:,x"]
)
def test_non_http_schemes_are_refused(url: str) -> None:
    with pytest.raises(FetchError) as err:
        MapSource.from_url(url)
    assert err.value.kind == "bad-scheme"


def test_source_kinds() -> None:
    assert MapSource.from_url("https://cdn.example/placeholder.png").kind == "none"
    assert MapSource.from_url("/uploads/poses/a.png").kind == "upload"
    assert MapSource.from_url("poses/a.png").kind == "upload"
    assert MapSource.from_url("https://cdn.example/a.png").kind == "url"


def test_keypoints_key_depends_on_points_and_size_only() -> None:
    person = [[0.5, 0.1], [0.5, 0.2], *([None] * 16)]
    a = MapSource.from_keypoints(person)
    b = MapSource.from_keypoints({"keypoints": [[*p, 1.0] if p else None for p in person]})
    assert a.keypoints_key(512, 512) == b.keypoints_key(512, 512)
    assert a.keypoints_key(512, 512) != a.keypoints_key(512, 768)
    moved = MapSource.from_keypoints([[0.5, 0.11], [0.5, 0.2], *([None] * 16)])
    assert moved.keypoints_key(512, 512) != a.keypoints_key(512, 512)


@pytest.mark.parametrize(
    "bad",
    [
        [],
        [[0.5, 0.5]] * 17,
        [["x", 0.5]] + [None] * 17,
        [[float("nan"), 0.5]] + [None] * 17,
        [[9.0, 0.5]] + [None] * 17,
        "not a list",
    ],
)
def test_bad_keypoints_are_invalid_input(bad: object) -> None:
    with pytest.raises(InvalidInput):
        MapSource.from_keypoints(bad)


def test_too_many_persons_are_refused() -> None:
    person = [[0.5, 0.5], *([None] * 17)]
    pose = MapSource.from_keypoints([person] * 16).pose
    assert pose is not None and len(pose.people) == 16
    with pytest.raises(InvalidInput):
        MapSource.from_keypoints([person] * 17)
