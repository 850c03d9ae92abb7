"""Opaque keyset cursors for list endpoints (no offsets: they get slower the deeper you page)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from posegen.exceptions import InvalidInput

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode(*values: Any) -> str:
    """Cursor for the position after a row; datetimes and ints survive the round trip."""
    plain = [v.isoformat() if isinstance(v, dt.datetime) else v for v in values]
    raw = json.dumps(plain, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str, *types: type) -> tuple[Any, ...]:
    """Values of a cursor made by :func:`encode`, checked against ``types``."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or len(values) != len(types):
            raise ValueError("wrong shape")
        out: list[Any] = []
        for value, kind in zip(values, types, strict=True):
            if kind is dt.datetime:
                stamp = dt.datetime.fromisoformat(value)
                if stamp.tzinfo is None:
                    raise ValueError("naive timestamp")
                out.append(stamp)
            elif kind is int and isinstance(value, int) and not isinstance(value, bool):
                out.append(value)
            else:
                raise ValueError("wrong type")
        return tuple(out)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput("malformed cursor", kind="bad-cursor") from exc
