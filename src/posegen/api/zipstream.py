"""A ZIP archive produced as a stream of chunks, never held in memory whole.

The standard library's ``zipfile`` writes to a non-seekable sink by using data descriptors; this
module hands it such a sink and yields whatever it wrote after every block read from disk.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

BLOCK = 256 * 1024


class _Sink(io.RawIOBase):
    """Collects writes until taken; not seekable, so ``zipfile`` streams."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


def stream_zip(files: Iterable[tuple[str, Path]]) -> Iterator[bytes]:
    """Yield a ZIP (stored, not deflated: PNGs are already compressed) of ``(name, path)``."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, path in files:
            with path.open("rb") as src:
                stat = path.stat()
                stamp = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC)
                info = zipfile.ZipInfo(name, date_time=stamp.timetuple()[:6])
                info.file_size = stat.st_size  # lets zipfile choose ZIP64 up front when needed
                with archive.open(info, "w") as dst:
                    while block := src.read(BLOCK):
                        dst.write(block)
                        if chunk := sink.take():
                            yield chunk
            if chunk := sink.take():
                yield chunk
    if chunk := sink.take():
        yield chunk
