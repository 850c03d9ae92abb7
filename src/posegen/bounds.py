"""The ranges a client-supplied number or timestamp must fall in before it reaches the database.

Row ids are BIGINT: a number beyond 2^63 - 1 cannot name a row and overflows the driver's bind
(SQLite raises OverflowError, PostgreSQL a numeric error), so it is refused at the edge. Timestamps
are kept between 1970 and 9999 (UTC): ``0001-01-01T00:00+14:00`` is a valid ISO string whose UTC
value is in year 0, which Python cannot represent, and window arithmetic near year 9999 overflows.
"""

from __future__ import annotations

import datetime as dt

#: Largest BIGINT, the id type of every table.
MAX_ID = 2**63 - 1
MIN_TIMESTAMP = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MAX_TIMESTAMP = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)


def is_row_id(value: int) -> bool:
    """Whether ``value`` could be a row id (1 .. 2^63 - 1)."""
    return 1 <= value <= MAX_ID


def is_bigint(value: int) -> bool:
    """Whether ``value`` fits a signed 64-bit column."""
    return -MAX_ID - 1 <= value <= MAX_ID


def bounded_timestamp(value: dt.datetime) -> dt.datetime:
    """``value`` in UTC, or ``ValueError`` when it is outside 1970..9999 (or cannot be UTC).

    A naive value is taken as UTC, as the API documents.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    try:
        utc = value.astimezone(dt.UTC)
    except (OverflowError, ValueError) as exc:
        raise ValueError("timestamp out of range (1970..9999 UTC)") from exc
    if not MIN_TIMESTAMP <= utc < MAX_TIMESTAMP:
        raise ValueError("timestamp out of range (1970..9999 UTC)")
    return utc
