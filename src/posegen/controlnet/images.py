"""Subject images: the same safe fetch and validation as maps, without the map cache."""

from __future__ import annotations

import logging

from PIL import Image

from posegen.config import Settings
from posegen.controlnet.fetch import Fetcher, FetchPolicy
from posegen.controlnet.localfiles import read_upload
from posegen.controlnet.sources import is_remote
from posegen.controlnet.validate import decode, to_rgb
from posegen.exceptions import FetchError, InvalidInput, NotFound, StorageUnavailable

log = logging.getLogger(__name__)


def load_image(settings: Settings, url_or_path: str) -> Image.Image:
    """Fetch (http/https) or read (under the uploads root) an image, validate it fully and
    return it as RGB at its own size. Raises ``FetchError`` with a stable kind."""
    ref = url_or_path.strip()
    if not ref:
        raise FetchError("empty image reference", kind="bad-path")
    if is_remote(ref):
        fetcher = Fetcher(FetchPolicy.from_settings(settings))
        try:
            data = fetcher.fetch(ref).data
        finally:
            fetcher.close()
    else:
        data = read_upload_bytes(settings, ref, settings.fetch_max_bytes)
    return to_rgb(decode(data, settings.image_max_pixels))


def read_upload_bytes(settings: Settings, ref: str, max_bytes: int) -> bytes:
    """An upload's bytes from where uploads live: the confined local folder, or the bucket
    (``POSEGEN_STORAGE=s3``). A missing or misnamed upload is ``FetchError(kind="bad-path")``;
    a store that cannot be reached is ``FetchError(kind="connect")`` (the worker retries)."""
    if settings.storage != "s3":
        data, _st = read_upload(settings.effective_uploads_dir, ref, max_bytes)
        return data
    from posegen.storage.s3 import S3Uploads

    try:
        return S3Uploads(settings).get(ref, max_bytes)
    except NotFound as exc:
        raise FetchError(f"no such upload: {ref!r}", kind="bad-path") from exc
    except InvalidInput as exc:
        raise FetchError(f"upload {ref!r}: {exc.message}", kind=exc.kind) from exc
    except StorageUnavailable as exc:
        # ``connect``: transient, like an unreachable origin; the store's answer (which names
        # the key, and so the content hash) goes to the log, not into the generation's error.
        log.warning("upload unreadable: object store unavailable", extra={"error": exc.message})
        raise FetchError("the object store is unavailable", kind="connect") from exc
