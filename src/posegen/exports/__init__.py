"""Exports: a result in the formats people publish to (social posts and stories, marketplace
tiles, print pages), framed by the pose's keypoints so no limb is cut, encoded as sRGB files
without metadata. Pure rendering: the queue and the worker decide when, the store where.

The formats are one table of data (:func:`builtin_formats`), extended by operators through
``POSEGEN_EXPORT_FORMATS`` (:func:`load_formats`); :func:`render_export` makes one file and
:func:`render_exports` several from one decoded result.
"""

from posegen.exports.formats import (
    ExportFormat,
    builtin_formats,
    content_type,
    file_extension,
    load_formats,
    parse_format,
)
from posegen.exports.render import export_points, render_export, render_exports

__all__ = [
    "ExportFormat",
    "builtin_formats",
    "content_type",
    "export_points",
    "file_extension",
    "load_formats",
    "parse_format",
    "render_export",
    "render_exports",
]
