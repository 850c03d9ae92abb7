"""Opaque keyset cursors for list endpoints (no offsets: they get slower the deeper you page)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from posegen import bounds
from posegen.exceptions import InvalidInput

T = TypeVar("T")
S = TypeVar("S", bound=Select[*tuple[Any, ...]])

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
                out.append(bounds.bounded_timestamp(stamp))
            elif kind is int and isinstance(value, int) and not isinstance(value, bool):
                # A hand-made cursor may carry any integer; beyond BIGINT it overflows the bind.
                if not bounds.is_bigint(value):
                    raise ValueError("integer out of range")
                out.append(value)
            elif kind is str and isinstance(value, str) and len(value) <= 1000:
                if "\x00" in value:
                    raise ValueError("NUL in text")
                out.append(value)
            elif (
                kind is float
                and isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            ):
                out.append(float(value))
            else:
                raise ValueError("wrong type")
        return tuple(out)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInput("malformed cursor", kind="bad-cursor") from exc


def newest_first(
    stmt: S,
    created: InstrumentedAttribute[dt.datetime],
    id_: InstrumentedAttribute[int],
    cursor: str | None,
    limit: int,
) -> S:
    """``stmt`` ordered by (``created``, ``id_``) descending, after ``cursor``, with one row
    beyond ``limit`` so :func:`page` can tell whether another page follows."""
    if cursor:
        after_created, after_id = decode(cursor, dt.datetime, int)
        stmt = stmt.where(
            or_(created < after_created, and_(created == after_created, id_ < after_id))
        )
    return stmt.order_by(created.desc(), id_.desc()).limit(limit + 1)


def page(rows: list[T], limit: int, key: Callable[[T], tuple[Any, ...]]) -> Page[T]:
    """The first ``limit`` of ``rows`` (read with one extra), and a cursor after the last of them
    (made from ``key``) when the extra row shows that another page follows."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, encode(*key(rows[-1])) if more and rows else None)
