"""Local result storage: id-only names, atomic files, thumbnails within 400x400."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from posegen.config import load_settings
from posegen.exceptions import InvalidInput, NotFound
from posegen.storage import ResultStore, make_storage, result_names


def _png(width: int, height: int, colour: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("size", "thumb"),
    [
        ((512, 512), (400, 400)),
        ((1024, 512), (400, 200)),
        ((320, 640), (200, 400)),
        ((128, 96), (128, 96)),
    ],
)
def test_save_writes_image_and_bounded_thumbnail(
    tmp_path: Path, size: tuple[int, int], thumb: tuple[int, int]
) -> None:
    store = make_storage(load_settings(data_dir=tmp_path))
    assert isinstance(store, ResultStore)
    png = _png(*size)
    image_rel, thumb_rel, _ = store.save_result(12345, "p7-v1", png)

    assert (image_rel, thumb_rel) == ("000012/12345/p7-v1.png", "000012/12345/p7-v1.thumb.jpg")
    root = tmp_path / "results"
    assert (root / image_rel).read_bytes() == png
    with Image.open(root / thumb_rel) as t:
        assert t.format == "JPEG" and t.size == thumb
    assert store.read(image_rel) == png
    assert store.open(thumb_rel) == (root / thumb_rel).resolve()
    # Nothing but the two files: no temporary leftovers.
    assert sorted(p.name for p in (root / "000012" / "12345").iterdir()) == [
        "p7-v1.png",
        "p7-v1.thumb.jpg",
    ]


def test_decoded_image_is_used_when_given_and_rewrite_replaces(tmp_path: Path) -> None:
    store = make_storage(load_settings(data_dir=tmp_path))
    first = _png(64, 64, (255, 0, 0))
    store.save_result(1, "text-v0", first)
    second = _png(64, 64, (0, 255, 0))
    image_rel, thumb_rel, _ = store.save_result(
        1, "text-v0", second, Image.new("RGB", (64, 64), (0, 255, 0))
    )
    assert store.read(image_rel) == second
    with Image.open(store.open(thumb_rel)) as t:
        r, g, _b = t.convert("RGB").getpixel((32, 32))  # type: ignore[misc]
        assert g > 200 and r < 40


@pytest.mark.parametrize(
    "key", ["../x", "p1/v0", "", "P1-V0", "a" * 101, "p1-v0\x00", "p1-v0.png", "..", " p1"]
)
def test_names_come_from_ids_only(tmp_path: Path, key: str) -> None:
    store = make_storage(load_settings(data_dir=tmp_path))
    with pytest.raises(InvalidInput) as err:
        store.save_result(1, key, _png(8, 8))
    assert err.value.kind == "bad-path"
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*"))


@pytest.mark.parametrize("gid", [0, -1, True])
def test_generation_id_must_be_positive(tmp_path: Path, gid: int) -> None:
    with pytest.raises(InvalidInput):
        result_names(gid, "p1-v0")


@pytest.mark.parametrize(
    "rel",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "000000/1/../../../x.png",
        "000000/1/p1-v0.png/../../../../etc/passwd",
        "000000/1/p1-v0.txt",
        "000000/1/p1-v0.png\x00",
        "000000//p1-v0.png",
        "000000/1/%2e%2e.png",
    ],
)
def test_open_refuses_anything_but_store_names(tmp_path: Path, rel: str) -> None:
    store = make_storage(load_settings(data_dir=tmp_path))
    with pytest.raises(InvalidInput) as err:
        store.open(rel)
    assert err.value.kind == "bad-path"


def test_open_missing_and_symlink_escape(tmp_path: Path) -> None:
    store = make_storage(load_settings(data_dir=tmp_path))
    with pytest.raises(NotFound):
        store.open("000000/5/p1-v0.png")
    # A symlinked folder inside the results dir must not lead outside it.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "p1-v0.png").write_bytes(b"secret")
    (tmp_path / "results" / "000000").mkdir(parents=True)
    os.symlink(outside, tmp_path / "results" / "000000" / "6")
    with pytest.raises(InvalidInput):
        store.open("000000/6/p1-v0.png")


def test_delete_generation(tmp_path: Path) -> None:
    store = make_storage(load_settings(data_dir=tmp_path))
    store.save_result(2001, "p1-v0", _png(8, 8))
    store.save_result(2001, "p1-v1", _png(8, 8))
    store.save_result(2002, "p1-v0", _png(8, 8))
    assert store.delete_generation(2001) == 4
    assert store.delete_generation(2001) == 0
    assert store.read("000002/2002/p1-v0.png")
