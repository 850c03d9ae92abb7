"""The streamed ZIP: valid archive, produced in bounded chunks (never built whole in memory)."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

from posegen.api.zipstream import BLOCK, stream_zip


def test_zip_is_streamed_in_bounded_chunks(tmp_path: Path) -> None:
    files = []
    for i, size in enumerate((3 * BLOCK + 17, 0, BLOCK // 3)):
        path = tmp_path / f"f{i}.png"
        path.write_bytes(os.urandom(size))
        files.append((f"f{i}.png", path))
    chunks = list(stream_zip(files))
    # Every chunk is about one read block (plus headers), so memory stays bounded by BLOCK.
    assert len(chunks) >= 4
    assert max(len(c) for c in chunks) <= BLOCK + 1024
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as archive:
        assert archive.testzip() is None
        for name, path in files:
            assert archive.read(name) == path.read_bytes()
    with zipfile.ZipFile(io.BytesIO(b"".join(stream_zip([])))) as empty:
        assert empty.namelist() == []
