"""The orphan sweep: stored files that no row names, older than a grace period, are deleted.

Every write of bytes happens before the row that names them commits (so a reader never finds a
row without its bytes); a crash in between leaves an orphan. The sweep lists a store's names,
then asks the database which of them rows name, and deletes the rest once older than
``POSEGEN_ORPHAN_GRACE_SECONDS``: listing comes first, so a file whose row commits while the
sweep runs is seen as named; the grace period keeps a write whose row is still coming.

A namespace is a listing (a folder on disk, or a prefix in the bucket) and a reference rule
(which names rows refer to). Names a namespace does not recognise are left alone: the sweep
never deletes a file it cannot tie to a table. A new byte-owning table (exports) appends its
namespace to :func:`namespaces`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, select

from posegen.config import Settings
from posegen.db.engine import read_connection
from posegen.db.models import GeneratedPose, ResultExport, Upload
from posegen.exceptions import NotFound, StorageUnavailable
from posegen.retention.report import PruneReport
from posegen.storage.base import REL_PATH
from posegen.uploads.images import EXTENSIONS

#: Names looked up in one query (and deleted in one S3 request: its maximum is 1000).
PAGE = 1000


@dataclass(frozen=True)
class Found:
    name: str
    modified: dt.datetime
    size: int


class Listing(Protocol):
    def pages(self) -> Iterator[list[Found]]: ...

    def delete(self, names: list[str]) -> None: ...

    def modified(self, name: str) -> dt.datetime | None:
        """The file's time now (None: gone)."""
        ...


@dataclass(frozen=True)
class Namespace:
    """What the sweep needs of one kind of stored file."""

    name: str
    listing: Listing
    #: Names the namespace makes; anything else is left alone.
    valid: re.Pattern[str]
    #: A half-written temporary file (no row ever names one): swept after the grace too.
    temporary: re.Pattern[str]
    #: Of these valid names, the ones a row refers to.
    referenced: Callable[[Connection, list[str]], set[str]]


# --- reference rules ---------------------------------------------------------------------
def results_referenced(conn: Connection, names: list[str]) -> set[str]:
    """A result file is named by a ``generated_poses`` row's image or thumbnail path, an export
    file by its ``result_exports`` row, a changed background by its ``result_variants`` row."""
    gids = sorted({int(n.split("/")[1]) for n in names})
    p = GeneratedPose
    rows = conn.execute(
        select(p.image_path, p.thumbnail_path).where(p.generation_id.in_(gids))
    ).all()
    named = {path for r in rows for path in (r.image_path, r.thumbnail_path) if path}
    # Exports live beside their result (``<key>.x-<format>.<ext>``), named by their own rows.
    named.update(
        conn.execute(
            select(ResultExport.path).where(ResultExport.generation_id.in_(gids))
        ).scalars()
    )
    # Changed backgrounds (``<key>-bg-<digest>.png`` and thumbnail), named by their variants.
    from posegen.backgrounds import records as variants

    named.update(variants.paths(conn, gids))
    return named.intersection(names)


UPLOAD_NAME = re.compile(r"([1-9][0-9]{0,18})/[0-9a-f]{2}/([0-9a-f]{64})\.(png|jpg|webp)")


def uploads_referenced(conn: Connection, names: list[str]) -> set[str]:
    """An upload file is named by the ``uploads`` row of its owner, hash and type."""
    parsed = {}
    for n in names:
        m = UPLOAD_NAME.fullmatch(n)
        if m:
            parsed[n] = (int(m[1]), m[2], m[3])
    users = sorted({u for u, _, _ in parsed.values()})
    shas = sorted({s for _, s, _ in parsed.values()})
    rows = conn.execute(
        select(Upload.user_id, Upload.sha256, Upload.content_type).where(
            Upload.user_id.in_(users), Upload.sha256.in_(shas)
        )
    ).all()
    have = {(r.user_id, r.sha256, EXTENSIONS.get(r.content_type)) for r in rows}
    return {n for n, key in parsed.items() if key in have}


# --- listings ------------------------------------------------------------------------------
class LocalListing:
    """Files under a folder (symbolic links are never followed nor deleted)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def pages(self) -> Iterator[list[Found]]:
        page: list[Found] = []
        if not self.root.is_dir():
            return
        for folder, dirs, files in os.walk(self.root, followlinks=False):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder, name)
                try:
                    st = path.lstat()
                except FileNotFoundError:
                    continue
                if not path.is_file() or path.is_symlink():
                    continue
                modified = dt.datetime.fromtimestamp(st.st_mtime, dt.UTC)
                page.append(Found(path.relative_to(self.root).as_posix(), modified, st.st_size))
                if len(page) >= PAGE:
                    yield page
                    page = []
        if page:
            yield page

    def modified(self, name: str) -> dt.datetime | None:
        try:
            return dt.datetime.fromtimestamp((self.root / name).lstat().st_mtime, dt.UTC)
        except FileNotFoundError:
            return None

    def delete(self, names: list[str]) -> None:
        for name in names:
            path = self.root / name
            if path.is_symlink() or not path.resolve().is_relative_to(self.root.resolve()):
                continue
            path.unlink(missing_ok=True)


class S3Listing:
    """Objects under a prefix of the bucket."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix

    def pages(self) -> Iterator[list[Found]]:
        from posegen.storage.s3 import translate

        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix, PaginationConfig={"PageSize": PAGE}
            )
            for page in pages:
                yield [
                    Found(o["Key"][len(self.prefix) :], o["LastModified"], int(o["Size"]))
                    for o in page.get("Contents", ())
                ]
        except Exception as exc:
            raise translate(exc, f"list {self.prefix}") from exc

    def modified(self, name: str) -> dt.datetime | None:
        from posegen.storage.s3 import translate

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.prefix + name)
        except Exception as exc:
            err = translate(exc, f"find {self.prefix}{name}")
            if isinstance(err, NotFound):
                return None
            raise err from exc
        modified: dt.datetime = head["LastModified"]
        return modified

    def delete(self, names: list[str]) -> None:
        from posegen.storage.s3 import translate

        for start in range(0, len(names), PAGE):
            keys = [{"Key": self.prefix + n} for n in names[start : start + PAGE]]
            try:
                resp = self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
                )
            except Exception as exc:
                raise translate(exc, f"delete under {self.prefix}") from exc
            errors = resp.get("Errors") or []
            if errors:
                first = errors[0]
                raise StorageUnavailable(
                    f"object store refused to delete {first.get('Key')}: {first.get('Code')}"
                )


# --- the namespaces of a deployment ------------------------------------------------------------
_RESULT_TMP = re.compile(r"[0-9]{6}/[1-9][0-9]{0,18}/\.[^/]+\.[0-9a-f]{8}\.tmp")
_UPLOAD_TMP = re.compile(r"[1-9][0-9]{0,18}/[0-9a-f]{2}/\.incoming-[^/]+")
_NEVER = re.compile(r"(?!)")


def namespaces(settings: Settings) -> list[Namespace]:
    """The stores this deployment writes, each with its reference rule."""
    if settings.storage == "s3":
        from posegen.storage.s3 import S3Storage, S3Uploads

        results = S3Storage(settings)
        ups = S3Uploads(settings)
        return [
            Namespace(
                "results",
                S3Listing(results.client, results.bucket, results.prefix),
                REL_PATH,
                _NEVER,  # a PUT is atomic: no temporary objects
                results_referenced,
            ),
            Namespace(
                "uploads",
                S3Listing(ups.client, ups.bucket, ups.prefix),
                UPLOAD_NAME,
                _NEVER,
                uploads_referenced,
            ),
        ]
    return [
        Namespace(
            "results",
            LocalListing(settings.effective_results_dir.expanduser()),
            REL_PATH,
            _RESULT_TMP,
            results_referenced,
        ),
        Namespace(
            "uploads",
            LocalListing(settings.effective_uploads_dir.expanduser()),
            UPLOAD_NAME,
            _UPLOAD_TMP,
            uploads_referenced,
        ),
    ]


def sweep(
    engine: Engine,
    settings: Settings,
    report: PruneReport,
    now: dt.datetime,
    spaces: list[Namespace] | None = None,
) -> None:
    """Delete (or count, on a dry run) every file older than the grace period no row names."""
    older_than = now - dt.timedelta(seconds=settings.orphan_grace_seconds)
    for space in namespaces(settings) if spaces is None else spaces:
        tally = report.orphan(space.name)
        try:
            for page in space.listing.pages():
                old = [f for f in page if f.modified < older_than]
                temps = [f for f in old if space.temporary.fullmatch(f.name)]
                candidates = [f for f in old if space.valid.fullmatch(f.name)]
                if candidates:
                    with read_connection(engine) as conn:
                        named = space.referenced(conn, [f.name for f in candidates])
                    # Re-read each one's time: a retry may have written the name again since
                    # the listing, its row about to commit. Orphans are few: one look each.
                    candidates = [
                        f
                        for f in candidates
                        if f.name not in named
                        and (m := space.listing.modified(f.name)) is not None
                        and m < older_than
                    ]
                doomed = temps + candidates
                if doomed and not report.dry_run:
                    space.listing.delete([f.name for f in doomed])
                tally.add(len(doomed), sum(f.size for f in doomed))
        except (OSError, StorageUnavailable) as exc:
            report.errors.append(f"sweeping {space.name}: {exc}")
