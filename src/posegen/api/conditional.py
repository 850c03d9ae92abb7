"""Private files with validators: an ``ETag`` on every per-user image and ``304 Not Modified``
when the browser already holds that version (``If-None-Match``), after the same ownership check.

Results never change once written, so the tag (from the file's size and modification time, as
Starlette's own) only changes if an operator replaces the file. ``Cache-Control: private`` keeps
shared caches (proxies, CDNs) from storing one user's image for another.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response


def etag_of(stat: os.stat_result) -> str:
    base = f"{stat.st_mtime_ns}-{stat.st_size}".encode()
    return '"' + hashlib.sha256(base).hexdigest()[:32] + '"'


def _matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    return etag in (tag.strip().removeprefix("W/") for tag in header.split(","))


def private_file(
    request: Request,
    path: Path,
    media_type: str,
    *,
    max_age: int,
    filename: str | None = None,
) -> Response:
    """``path`` as a private, revalidatable response (304 when ``If-None-Match`` matches)."""
    stat = os.stat(path)
    headers = {"Cache-Control": f"private, max-age={max_age}", "ETag": etag_of(stat)}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and _matches(if_none_match, headers["ETag"]):
        return Response(status_code=304, headers=headers)
    return FileResponse(
        path,
        media_type=media_type,
        filename=filename,
        content_disposition_type="inline",
        headers=headers,
        stat_result=stat,
    )
