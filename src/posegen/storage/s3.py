"""Results in an S3-compatible object store (AWS S3, R2, MinIO, Ceph, Garage, SeaweedFS).

Keys are ``<POSEGEN_S3_PREFIX>results/<relative path>``, the relative path being the same
id-only name the local store uses (:func:`~posegen.storage.base.result_names`), so the database
rows are identical whichever store wrote them. A PUT is atomic for readers (an object is either
absent or complete), and the worker writes the row that names a key only after both PUTs
succeeded: a crash in between leaves an orphan object, never a row without bytes.

Credentials come from boto3's standard chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, instance roles...), never from posegen's own settings, so they are not in its
settings dump. Every failure of the store surfaces as :class:`StorageUnavailable` with one line
saying what the store answered (never the secret), which the worker treats as transient.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from collections.abc import Iterator
from typing import Any

from PIL import Image

from posegen.config import Settings
from posegen.exceptions import ConfigError, InvalidInput, NotFound, StorageUnavailable
from posegen.storage.base import (
    MEDIA_TYPES,
    StoredFile,
    StoredResult,
    check_rel_path,
    export_name,
    generation_folder,
    result_names,
)
from posegen.storage.local import make_thumbnail

#: Bytes read from the store per chunk while streaming a download or a ZIP member.
BLOCK = 256 * 1024
_MEDIA = MEDIA_TYPES


class S3Storage:
    """The object-store result store; one boto3 client per settings, shared by threads."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        if not settings.s3_bucket:
            raise ConfigError("POSEGEN_STORAGE=s3 needs POSEGEN_S3_BUCKET")
        self.bucket = settings.s3_bucket
        prefix = settings.s3_prefix.strip("/")
        self.prefix = f"{prefix}/results/" if prefix else "results/"
        self.sse = settings.s3_sse
        self.client = client if client is not None else _client(*_client_key(settings))

    # --- the ResultStore interface ----------------------------------------------------------
    def save_result(
        self,
        generation_id: int,
        variation_key: str,
        png: bytes,
        image: Image.Image | None = None,
    ) -> StoredResult:
        """PUT the PNG, then its thumbnail; the caller's row names them only afterwards."""
        image_rel, thumb_rel = result_names(generation_id, variation_key)
        thumb = make_thumbnail(png if image is None else image)
        self._put(image_rel, png, "image/png")
        self._put(thumb_rel, thumb, "image/jpeg")
        return StoredResult(image_rel, thumb_rel, len(png) + len(thumb))

    def save_export(
        self, generation_id: int, variation_key: str, fmt: str, ext: str, data: bytes
    ) -> str:
        """PUT one export under the generation's folder (removed with it)."""
        rel = export_name(generation_id, variation_key, fmt, ext)
        self._put(rel, data, MEDIA_TYPES[rel[rel.rfind(".") :]])
        return rel

    def read(self, rel_path: str) -> bytes:
        stored = self.open_stream(rel_path)
        return b"".join(stored.chunks)

    def open_stream(self, rel_path: str) -> StoredFile:
        """The object's size, time and a chunk iterator that never holds the whole object."""
        key = self.key(rel_path)
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise _translate(exc, f"read {key}") from exc
        body = resp["Body"]
        modified = resp.get("LastModified") or dt.datetime.now(dt.UTC)
        return StoredFile(
            size=int(resp["ContentLength"]),
            modified=modified,
            media_type=_MEDIA.get(rel_path[rel_path.rfind(".") :], "application/octet-stream"),
            chunks=_chunks(body, key),
        )

    def presign(self, rel_path: str, seconds: int) -> str:
        """A GET URL for the object valid ``seconds`` (signed locally: no request to the store).

        Checks that the object exists first, so a missing file is a 404 rather than a redirect
        to the store's own error page."""
        key = self.key(rel_path)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise _translate(exc, f"find {key}") from exc
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=seconds
        )
        return url

    def delete_generation(self, generation_id: int) -> int:
        """Delete every object under the generation's folder; returns how many were deleted."""
        folder = f"{self.prefix}{generation_folder(generation_id)}/"
        removed = 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=folder
            )
            for page in pages:
                keys = [{"Key": o["Key"]} for o in page.get("Contents", ())]
                if not keys:
                    continue
                # One request per 1000 keys (the API's maximum), not one per object.
                resp = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                )
                errors = resp.get("Errors") or []
                if errors:
                    first = errors[0]
                    raise StorageUnavailable(
                        f"object store refused to delete {first.get('Key')}: "
                        f"{first.get('Code')} ({first.get('Message')})"
                    )
                removed += len(keys)
        except StorageUnavailable:
            raise
        except Exception as exc:
            raise _translate(exc, f"delete {folder}") from exc
        return removed

    def probe(self) -> None:
        """The worker's breaker probe while paused: can this store take a write now? One small
        PUT to a fixed key, ``<POSEGEN_S3_PREFIX>/posegen-probe``: outside ``results/`` and
        ``uploads/``, so neither listings nor the orphan sweep ever see it."""
        key = self.prefix.removesuffix("results/") + "posegen-probe"
        extra: dict[str, Any] = {"ServerSideEncryption": self.sse} if self.sse else {}
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=b"posegen", **extra)
        except Exception as exc:
            raise _translate(exc, f"write {key}") from exc

    def check(self) -> None:
        """Start-up check: the bucket exists and these credentials may use it (one HEAD)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise _translate(exc, f"use bucket {self.bucket!r}", bucket=True) from exc

    # --- helpers ------------------------------------------------------------------------
    def key(self, rel_path: str) -> str:
        return self.prefix + check_rel_path(rel_path)

    def _put(self, rel_path: str, data: bytes, media_type: str) -> None:
        key = self.key(rel_path)
        extra: dict[str, Any] = {"ContentType": media_type}
        if self.sse:
            extra["ServerSideEncryption"] = self.sse
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
        except Exception as exc:
            raise _translate(exc, f"write {key}") from exc


#: An upload's name (``uploads.files.relpath``): owner id, hash shard, SHA-256, checked type.
UPLOAD_REL = re.compile(r"[1-9][0-9]{0,18}/[0-9a-f]{2}/[0-9a-f]{64}\.(png|jpg|webp)")


class S3Uploads:
    """Upload files in the bucket under ``<prefix>/uploads/<user id>/<sha[:2]>/<sha>.<ext>``:
    the same content-addressed, per-owner names as on disk (``uploads/files.py``)."""

    def __init__(self, settings: Settings) -> None:
        base = S3Storage(settings)
        self.client, self.bucket, self.sse = base.client, base.bucket, base.sse
        prefix = settings.s3_prefix.strip("/")
        self.prefix = f"{prefix}/uploads/" if prefix else "uploads/"

    def key(self, rel: str) -> str:
        if not isinstance(rel, str) or not UPLOAD_REL.fullmatch(rel):
            raise InvalidInput("not an upload path", kind="bad-path")
        return self.prefix + rel

    def exists(self, rel: str) -> bool:
        key = self.key(rel)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            err = _translate(exc, f"find {key}")
            if isinstance(err, NotFound):
                return False
            raise err from exc
        return True

    def put(self, rel: str, data: bytes) -> None:
        key = self.key(rel)
        extra: dict[str, Any] = {}
        if self.sse:
            extra["ServerSideEncryption"] = self.sse
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
        except Exception as exc:
            raise _translate(exc, f"write {key}") from exc

    def get(self, rel: str, max_bytes: int) -> bytes:
        """The object's bytes, refusing one over ``max_bytes`` (NotFound when absent)."""
        key = self.key(rel)
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise _translate(exc, f"read {key}") from exc
        if int(resp["ContentLength"]) > max_bytes:
            resp["Body"].close()
            raise InvalidInput(f"upload is over the {max_bytes}-byte cap", kind="too-large")
        return b"".join(_chunks(resp["Body"], key))

    def delete(self, rel: str) -> None:
        key = self.key(rel)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise _translate(exc, f"delete {key}") from exc


def _chunks(body: Any, key: str) -> Iterator[bytes]:
    try:
        while block := body.read(BLOCK):
            yield block
    except Exception as exc:
        raise _translate(exc, f"read {key}") from exc
    finally:
        body.close()


def _translate(exc: Exception, what: str, *, bucket: bool = False) -> Exception:
    """One line for a person: what posegen tried and what the store (or boto3) answered."""
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return StorageUnavailable(
            f"cannot {what}: no S3 credentials found (set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
        )
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "?"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchKey", "NotFound", "404") and not bucket:
            return NotFound("no such result file")
        if bucket and code in ("404", "NoSuchBucket", "NotFound"):
            return StorageUnavailable(f"cannot {what}: the bucket does not exist")
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            return StorageUnavailable(
                f"cannot {what}: the object store refused these credentials ({code}, "
                f"HTTP {status}); check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and the "
                "bucket's policy"
            )
        return StorageUnavailable(
            f"cannot {what}: the object store answered {code} (HTTP {status}): "
            f"{err.get('Message', '')}".rstrip(": ")
        )
    if isinstance(exc, NotFound | StorageUnavailable):
        return exc
    # Connection refused, timeouts, DNS: botocore's message names the endpoint, not secrets.
    return StorageUnavailable(f"cannot {what}: {type(exc).__name__}: {exc}")


#: For other store users (the orphan sweep): a boto3 error as posegen's one-line error.
translate = _translate


def _client_key(settings: Settings) -> tuple[str | None, str, bool, float]:
    return (
        settings.s3_endpoint_url or None,
        settings.s3_region,
        settings.s3_path_style,
        settings.s3_timeout_seconds,
    )


@functools.lru_cache(maxsize=8)
def _client(endpoint: str | None, region: str, path_style: bool, timeout: float) -> Any:
    """One client per configuration and process: creating one costs tens of milliseconds,
    and boto3 clients are safe to share between threads."""
    import boto3
    from botocore.config import Config

    # "Found credentials in environment variables" at INFO on every start: noise, and the
    # start-up failure must stay one line.
    logging.getLogger("botocore.credentials").setLevel(logging.WARNING)
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if path_style else "auto"},
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=32,
    )
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=region, config=config
    )
