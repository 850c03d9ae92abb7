"""The overview's per-minute counts, grouped in SQL on both engines."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine
from web_helpers import People, submit_library

from posegen import generations_read, queue
from posegen.config import Settings
from posegen.db.types import utcnow
from posegen.web.series import SERIES, per_minute


def test_counts_land_in_their_minute_by_status(
    engine: Engine, settings: Settings, people: People
) -> None:
    ids = [submit_library(engine, settings, people.user.account.id, [1]) for _ in range(3)]
    queue.cancel(engine, ids[0], None)
    views = [generations_read.get_visible(engine, i, None) for i in ids]
    # Seen from ten minutes after the last one, each sits in the bucket of its own minute.
    later = max(v.created_at for v in views) + dt.timedelta(minutes=10)
    series = per_minute(engine, minutes=60, now=later)
    assert series.total == 3
    expected = {name: [0] * 60 for name in SERIES}
    for view in views:
        index = series.labels.index(view.created_at.strftime("%H:%M"))
        assert index in (60 - 11, 60 - 12)  # a submit may straddle a minute boundary
        expected["cancelled" if view.id == ids[0] else "in queue"][index] += 1
    assert series.counts == expected
    assert list(series.as_json()["order"]) == list(SERIES)  # type: ignore[call-overload]
    # An hour and more later they have left the window.
    assert per_minute(engine, minutes=60, now=utcnow() + dt.timedelta(minutes=61)).total == 0
