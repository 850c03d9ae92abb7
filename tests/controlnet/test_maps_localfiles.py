"""Upload paths: only regular files really inside the uploads root are read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from maps_origin import image_bytes

from posegen.config import Settings
from posegen.controlnet import MapCache, load_image
from posegen.exceptions import FetchError


@pytest.fixture
def uploads(msettings: Settings, tmp_path: Path) -> Path:
    root = msettings.effective_uploads_dir
    (root / "poses").mkdir(parents=True)
    (root / "poses" / "a.png").write_bytes(image_bytes(size=(128, 128)))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.png").write_bytes(image_bytes(size=(64, 64)))
    (root / "escape").symlink_to(outside)
    (root / "poses" / "link.png").symlink_to(outside / "secret.png")
    (root / "inside-link.png").symlink_to(root / "poses" / "a.png")
    os.mkfifo(root / "fifo.png")
    return root


@pytest.mark.parametrize("reference", ["/uploads/poses/a.png", "poses/a.png", "inside-link.png"])
def test_files_inside_the_root_load(uploads: Path, cache: MapCache, reference: str) -> None:
    result = cache.load(reference)
    assert result is not None and result.size == (128, 128)


@pytest.mark.parametrize(
    "reference",
    [
        "../outside/secret.png",
        "/uploads/../outside/secret.png",
        "poses/../../outside/secret.png",
        "/etc/passwd",
        "/uploadsX/poses/a.png",
        "escape/secret.png",  # symlinked folder out of the root
        "poses/link.png",  # symlinked file out of the root
        "poses/a.png\x00.txt",
        "poses%2fa.png",
        "..%2foutside%2fsecret.png",
        "%2e%2e/outside/secret.png",
        "poses\\..\\..\\outside\\secret.png",
        "poses/missing.png",
        "poses",  # a folder
        "fifo.png",  # not a regular file: must not hang
    ],
)
def test_escapes_and_oddities_are_bad_paths(
    uploads: Path, msettings: Settings, reference: str
) -> None:
    cache = MapCache(msettings)
    try:
        with pytest.raises(FetchError) as err:
            cache.load(reference)
    finally:
        cache.close()
    assert err.value.kind == "bad-path"
    assert cache.usage().entries == 0
    with pytest.raises(FetchError):
        load_image(msettings, reference)


def test_replaced_upload_is_a_new_map(uploads: Path, cache: MapCache) -> None:
    first = cache.load("poses/a.png")
    target = uploads / "poses" / "a.png"
    target.write_bytes(image_bytes(size=(256, 128)))
    second = cache.load("poses/a.png")
    assert first is not None and second is not None
    assert second.size == (256, 128) and second.sha256 != first.sha256


def test_oversized_upload(uploads: Path, make_settings: object) -> None:
    settings: Settings = make_settings(fetch_max_bytes=100)  # type: ignore[operator]
    with pytest.raises(FetchError) as err:
        load_image(settings, "poses/a.png")
    assert err.value.kind == "too-large"
