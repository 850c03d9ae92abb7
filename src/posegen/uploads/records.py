"""Upload rows: store, list, read, delete, attach, release. Owner-only, like projects.

One row per owner and content (``UNIQUE (user_id, sha256)``): the same image uploaded twice by one
user is one row and one file. Who may use a row is decided here and nowhere else: its owner, and
(for library maps) an admin's upload is what a library pose may name.

Every change that can create or remove a file holds the owner's lock (``FOR NO KEY UPDATE`` on the
user's row on PostgreSQL, which still lets projects and generations insert rows referring to the
user; SQLite's write transaction already serialises): a file is written and its row inserted, or
its row deleted and the file unlinked, in one transaction under that lock, so a concurrent upload
of the same bytes never finds a row whose file is gone. A row in use by a project or pose is also
locked ``FOR UPDATE`` before it is removed; attaching takes it ``FOR SHARE``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, delete, exists, func, insert, or_, select

from posegen import pagination
from posegen.config import Settings
from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import PoseLibrary, Project, Upload, User
from posegen.db.types import utcnow
from posegen.exceptions import Conflict, InvalidInput, NotFound, UploadQuotaExceeded
from posegen.uploads import files
from posegen.uploads.images import CheckedImage, check_image

U = Upload
_COLUMNS = (U.id, U.user_id, U.sha256, U.bytes, U.width, U.height, U.content_type, U.created_at)


@dataclass(frozen=True)
class UploadView:
    id: int
    user_id: int
    sha256: str
    bytes: int
    width: int
    height: int
    content_type: str
    created_at: dt.datetime

    @property
    def relpath(self) -> str:
        return files.relpath(self.user_id, self.sha256, self.content_type)


def _view(r: Any) -> UploadView:
    return UploadView(
        r.id, r.user_id, r.sha256, r.bytes, r.width, r.height, r.content_type, r.created_at
    )


def store(engine: Engine, settings: Settings, user_id: int, data: bytes) -> UploadView:
    """Check ``data`` and keep it as ``user_id``'s upload (the existing row if already kept)."""
    return store_checked(engine, settings, user_id, check_image(settings, data))


def store_checked(
    engine: Engine, settings: Settings, user_id: int, image: CheckedImage
) -> UploadView:
    rel = files.relpath(user_id, image.sha256, image.content_type)
    # The bytes go to disk before the lock (on SQLite it is the database's write lock); under
    # it, only a rename. With the object store the PUT itself happens under the lock: written
    # earlier, a concurrent delete of the same content could remove it before this row exists.
    staged = files.stage(settings, rel, image.data)
    try:
        with write_transaction(engine) as conn:
            _lock_owner(conn, user_id)
            row = conn.execute(
                select(*_COLUMNS).where(U.user_id == user_id, U.sha256 == image.sha256)
            ).first()
            if row is not None:
                files.publish(staged, settings, rel)  # heals a file removed by hand
                return _view(row)
            used = conn.execute(
                select(func.coalesce(func.sum(U.bytes), 0)).where(U.user_id == user_id)
            ).scalar_one()
            quota = settings.user_upload_quota_bytes
            if int(used) + image.size > quota:
                raise UploadQuotaExceeded(
                    f"this upload ({image.size} bytes) would take your uploads past the "
                    f"{quota}-byte quota ({int(used)} bytes used); delete some uploads first"
                )
            published = files.publish(staged, settings, rel)
            try:
                upload_id = conn.execute(
                    insert(U)
                    .values(
                        user_id=user_id,
                        sha256=image.sha256,
                        bytes=image.size,
                        width=image.width,
                        height=image.height,
                        content_type=image.content_type,
                        created_at=utcnow(),
                    )
                    .returning(U.id)
                ).scalar_one()
            except BaseException:
                if published:
                    files.unlink(settings, rel)  # still under the owner's lock
                raise
            return _get(conn, upload_id, user_id)
    finally:
        files.discard(staged)  # gone already unless an error came first


def _lock_owner(conn: Connection, user_id: int) -> None:
    # FOR NO KEY UPDATE (key_share): serialises this owner's uploads without blocking the
    # FOR KEY SHARE that inserting a project or generation for the user takes. Nothing on SQLite.
    conn.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))


def _get(conn: Connection, upload_id: int, user_id: int) -> UploadView:
    row = conn.execute(select(*_COLUMNS).where(U.id == upload_id, U.user_id == user_id)).first()
    if row is None:
        # Another user's upload and no upload at all read the same: ids cannot be probed.
        raise NotFound(f"upload {upload_id} not found", kind="upload-not-found")
    return _view(row)


def get(engine: Engine, upload_id: int, user_id: int) -> UploadView:
    with read_connection(engine) as conn:
        return _get(conn, upload_id, user_id)


def content(
    engine: Engine, settings: Settings, upload_id: int, user_id: int
) -> tuple[UploadView, bytes]:
    """The owner's upload and its bytes."""
    view = get(engine, upload_id, user_id)
    return view, files.read(settings, view.relpath)


def list_for(
    engine: Engine,
    user_id: int,
    *,
    cursor: str | None = None,
    limit: int = pagination.DEFAULT_LIMIT,
) -> pagination.Page[UploadView]:
    """The user's uploads, newest first."""
    stmt = select(*_COLUMNS).where(U.user_id == user_id)
    stmt = pagination.newest_first(stmt, U.created_at, U.id, cursor, limit)
    with read_connection(engine) as conn:
        rows = [_view(r) for r in conn.execute(stmt)]
    return pagination.page(rows, limit, lambda v: (v.created_at, v.id))


def usage(engine: Engine, user_id: int) -> int:
    """Bytes of the user's stored uploads (what the quota counts)."""
    with read_connection(engine) as conn:
        used = conn.execute(
            select(func.coalesce(func.sum(U.bytes), 0)).where(U.user_id == user_id)
        ).scalar_one()
    return int(used)


def referenced(upload_id: Any) -> Any:
    """The reference rule: true while a project or library pose names the upload. Every
    removal (release, delete, the retention in ``posegen prune``) goes by it."""
    return or_(
        exists().where(Project.subject_upload_id == upload_id),
        exists().where(PoseLibrary.map_upload_id == upload_id),
    )


def _in_use(conn: Connection, upload_id: int) -> bool:
    return bool(conn.execute(select(referenced(upload_id))).scalar_one())


def delete_upload(engine: Engine, settings: Settings, upload_id: int, user_id: int) -> None:
    """Delete the owner's upload and its file; 409 while a project or pose refers to it."""
    with write_transaction(engine) as conn:
        _lock_owner(conn, user_id)
        view = _lock_row(conn, upload_id, user_id)
        if _in_use(conn, upload_id):
            raise Conflict(
                f"upload {upload_id} is in use by a project or pose; detach it first",
                kind="upload-in-use",
            )
        _remove(conn, settings, view)


def release(engine: Engine, settings: Settings, upload_id: int | None) -> bool:
    """Remove an upload a project or pose stopped referring to, if nothing refers to it any
    more (its row and file); True if removed. Trusted callers only: no owner check."""
    if upload_id is None:
        return False
    with write_transaction(engine) as conn:
        owner = conn.execute(select(U.user_id).where(U.id == upload_id)).scalar_one_or_none()
        if owner is None:
            return False
        _lock_owner(conn, owner)
        try:
            view = _lock_row(conn, upload_id, owner)
        except NotFound:
            return False
        if _in_use(conn, upload_id):
            return False
        _remove(conn, settings, view)
        return True


def _lock_row(conn: Connection, upload_id: int, user_id: int) -> UploadView:
    row = conn.execute(
        select(*_COLUMNS).where(U.id == upload_id, U.user_id == user_id).with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"upload {upload_id} not found", kind="upload-not-found")
    return _view(row)


def _remove(conn: Connection, settings: Settings, view: UploadView) -> None:
    conn.execute(delete(U).where(U.id == view.id))
    # Inside the transaction, under the owner's lock: see the module docstring.
    files.unlink(settings, view.relpath)


def attach(conn: Connection, upload_id: int, user_id: int) -> UploadView:
    """In the caller's transaction: the upload ``user_id`` owns, locked against removal until
    the caller commits; anyone else's (or none) is refused alike."""
    row = conn.execute(
        select(*_COLUMNS).where(U.id == upload_id, U.user_id == user_id).with_for_update(read=True)
    ).first()
    if row is None:
        raise InvalidInput(f"upload {upload_id} is not one of your uploads", kind="unknown-upload")
    return _view(row)
