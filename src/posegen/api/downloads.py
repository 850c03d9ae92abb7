"""One stored result file as an HTTP response, whichever store holds it.

The caller has already checked that the user may see the file. The local store answers with the
file (ranges, ETag from the file); an object store either streams the object through this process
(the default: the bucket stays private and needs no public endpoint) or, with
``POSEGEN_S3_DOWNLOAD=redirect``, answers 307 to a presigned URL valid for
``POSEGEN_S3_PRESIGN_SECONDS``, so the bytes never pass through the API.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from posegen.api.conditional import private_file
from posegen.config import Settings
from posegen.storage import LocalStorage, make_storage
from posegen.storage.base import MEDIA_TYPES

_MEDIA = {suffix.lstrip("."): media for suffix, media in MEDIA_TYPES.items()}


def stored_file(
    request: Request,
    settings: Settings,
    rel_path: str,
    *,
    max_age: int,
    filename: str | None = None,
) -> Response:
    store = make_storage(settings)
    if isinstance(store, LocalStorage):
        path = store.open(rel_path)
        media = _MEDIA.get(path.suffix.lstrip("."), "application/octet-stream")
        return private_file(request, path, media, max_age=max_age, filename=filename)
    cache_control = f"private, max-age={max_age}"
    if settings.s3_download == "redirect":
        url = store.presign(rel_path, settings.s3_presign_seconds)
        # The URL expires: a cache must not keep the redirect longer than the signature lives.
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    stored = store.open_stream(rel_path)
    headers = {"Cache-Control": cache_control, "Content-Length": str(stored.size)}
    if filename is not None:
        headers["Content-Disposition"] = f'inline; filename="{filename}"'
    return StreamingResponse(stored.chunks, media_type=stored.media_type, headers=headers)
