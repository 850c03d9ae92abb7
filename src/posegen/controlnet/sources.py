"""Where a ControlNet map comes from, and the cache key each source gets.

A pose row names its map as an http(s) URL, a path under the uploads root, or stored keypoints.
URLs are keyed by the SHA-256 of their canonical form, so spellings that reach the same resource
share one entry and different resources never collide (the seed used a 32-bit hash).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from posegen.exceptions import FetchError
from posegen.pose import Pose, parse_pose

SourceKind = Literal["url", "upload", "keypoints", "none"]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT_RE = re.compile(r"%([0-9A-Fa-f]{2})")
# Characters left as they are when re-quoting a path or query: RFC 3986 reserved + "%".
_PATH_SAFE = "/:@!$&'()*+,;=%"
_QUERY_SAFE = _PATH_SAFE + "?"


@dataclass(frozen=True)
class MapSource:
    """One map source. Build with :meth:`from_url` or :meth:`from_keypoints`."""

    kind: SourceKind
    #: Canonical URL, the upload path as given, or the pose's canonical JSON.
    value: str
    #: The pose (keypoints sources only).
    pose: Pose | None = None

    @classmethod
    def from_url(cls, url: str) -> MapSource:
        """A URL, ``/uploads/...`` or relative path; ``placeholder`` anywhere means "no map"."""
        url = url.strip()
        if "placeholder" in url:
            return cls("none", url)
        if is_remote(url):
            return cls("url", canonical_url(url))
        if not url:
            raise FetchError("empty map URL", kind="bad-path")
        return cls("upload", url)

    @classmethod
    def from_upload(cls, relpath: str) -> MapSource:
        """A stored upload's file below the uploads root (a path posegen made, never a client)."""
        return cls("upload", relpath)

    @classmethod
    def from_keypoints(cls, keypoints: Any) -> MapSource:
        """A stored pose in any accepted shape (:mod:`posegen.pose`), rendered locally."""
        pose = parse_pose(keypoints)
        return cls("keypoints", pose.canonical(), pose)

    def url_key(self) -> str:
        """SHA-256 of the canonical URL (URL sources)."""
        return sha256_text(self.value)

    def keypoints_key(self, width: int, height: int) -> str:
        """SHA-256 of the canonical pose JSON and the size it is rendered at."""
        return sha256_text(f"{self.value}|{width}x{height}")


def is_remote(reference: str) -> bool:
    """True for anything with a scheme (``https:``, ``file:``...), False for upload paths."""
    return bool(_SCHEME_RE.match(reference)) or reference.startswith("//")


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def canonical_url(url: str) -> str:
    """Normalise an http(s) URL: case of scheme and host, default port, dot segments,
    percent-encoding (unreserved characters decoded, escapes upper-cased), no fragment."""
    if "\x00" in url or any(c in url for c in "\r\n\t"):
        raise FetchError("control characters in URL", kind="bad-scheme")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"malformed URL: {exc}", kind="bad-scheme") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise FetchError(
            f"only http and https URLs are fetched, not {scheme or 'scheme-less'!r}",
            kind="bad-scheme",
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise FetchError("URL has no host", kind="bad-scheme")
    try:
        host = host.encode("idna").decode("ascii").lower() if not host.isascii() else host.lower()
    except UnicodeError as exc:
        raise FetchError(f"bad host name: {exc}", kind="bad-scheme") from exc
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    if parts.username is not None:
        userinfo = parts.username + (f":{parts.password}" if parts.password is not None else "")
        netloc = f"{userinfo}@{netloc}"
    path = _remove_dot_segments(_normalise_escapes(parts.path, _PATH_SAFE)) or "/"
    query = _normalise_escapes(parts.query, _QUERY_SAFE)
    return urlunsplit((scheme, netloc, path, query, ""))


def _normalise_escapes(text: str, safe: str) -> str:
    def fix(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    # Quote what must be quoted (spaces, non-ASCII) but keep existing escapes, then tidy them.
    return _PCT_RE.sub(fix, quote(text, safe=safe))


def _remove_dot_segments(path: str) -> str:
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    result = "/".join(out)
    return result if result.startswith("/") or not path.startswith("/") else "/" + result


def upload_relpath(path: str) -> str:
    """The part of an upload reference below the uploads root (``/uploads/a.png`` -> ``a.png``)."""
    if path.startswith("/uploads/"):
        return path[len("/uploads/") :]
    return path


def has_percent_escape(path: str) -> bool:
    return unquote(path) != path
