"""A ZIP archive produced as a stream of chunks, never held in memory whole.

The standard library's ``zipfile`` writes to a non-seekable sink by using data descriptors; this
module hands it such a sink and yields whatever it wrote after every block read from the store
(a file on disk, or an object streamed from S3: members are opened one at a time, when reached).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from posegen.exceptions import PosegenError
from posegen.storage import StoredFile

log = logging.getLogger(__name__)

#: A member's bytes: a file, or a function that opens a stored file when the member is reached.
Source = Path | Callable[[], StoredFile]

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


def stream_zip(files: Iterable[tuple[str, Source]]) -> Iterator[bytes]:
    """Yield a ZIP (stored, not deflated: PNGs are already compressed) of ``(name, source)``.

    A member that cannot be opened (its file removed behind the database's back) is left out,
    so the rest still download."""
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, source in files:
            try:
                stored = _open(source)
            except (PosegenError, OSError) as exc:
                log.warning("archive member missing", extra={"member": name, "error": str(exc)})
                continue
            info = zipfile.ZipInfo(name, date_time=stored.modified.timetuple()[:6])
            info.file_size = stored.size  # lets zipfile choose ZIP64 up front when needed
            with archive.open(info, "w") as dst:
                for block in stored.chunks:
                    dst.write(block)
                    if chunk := sink.take():
                        yield chunk
            if chunk := sink.take():
                yield chunk
    if chunk := sink.take():
        yield chunk


def _open(source: Source) -> StoredFile:
    if not isinstance(source, Path):
        return source()
    fh = source.open("rb")
    stat = source.stat()
    stamp = dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC)
    return StoredFile(stat.st_size, stamp, "application/octet-stream", _blocks(fh))


def _blocks(fh: io.BufferedReader) -> Iterator[bytes]:
    with fh:
        while block := fh.read(BLOCK):
            yield block
