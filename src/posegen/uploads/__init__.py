"""Uploads: images users send (project subjects, library pose maps), owned and content-addressed.

Each stored image is an ``uploads`` row (owner, SHA-256, bytes, size, type) with a private file
named from that row; projects and poses refer to a row by id, and only its owner may attach it
(library maps: an admin's upload). A project's or pose's upload is removed with the last row that
refers to it (:func:`release`); an upload never attached stays until its owner deletes it.
"""

from posegen.uploads.files import read as read_file
from posegen.uploads.files import relpath
from posegen.uploads.images import CheckedImage, check_image, decode_slot
from posegen.uploads.records import (
    UploadView,
    attach,
    content,
    delete_upload,
    get,
    list_for,
    referenced,
    release,
    store,
    store_checked,
    usage,
)

__all__ = [
    "CheckedImage",
    "UploadView",
    "attach",
    "check_image",
    "content",
    "decode_slot",
    "delete_upload",
    "get",
    "list_for",
    "read_file",
    "referenced",
    "release",
    "relpath",
    "store",
    "store_checked",
    "usage",
]
