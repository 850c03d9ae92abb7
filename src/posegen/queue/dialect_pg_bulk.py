"""PostgreSQL batch statements: a whole batch travels as ONE JSON parameter that the server
unpacks with ``json_to_recordset``. Any batch size is one statement with a constant text
(psycopg prepares it once), and the client's work is one C-speed ``json.dumps``: per-column
arrays were dumped element by element in Python, and in text format every string element was
also escaped with a regular expression, which cost more than the rest of the batch."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from posegen.credits import hourly
from posegen.library import popularity
from posegen.queue import quota
from posegen.queue.bulk_core import EndRow

_LIVE = (
    "id, lease_token, user_id, status, cancel_requested, attempts, max_attempts, "
    "poses_completed, poses_failed, total_expected_poses, deadline_at, lease_expires_at, "
    "reserved_bytes, credit_charged"
)

FENCE = (
    f"SELECT {_LIVE} FROM pose_generations "
    "WHERE id = ANY(%(ids)b::bigint[]) AND status = 'processing' ORDER BY id FOR UPDATE"
)

_POSE_COLUMNS = (
    "generation_id bigint, variation_key text, pose_id bigint, variation_index int, "
    "status text, image_path text, thumbnail_path text, seed bigint, prompt_used text, "
    "duration_ms int, error_kind text, error_message text, error_detail text, metadata json, "
    "bytes bigint, backend text, model text"
)
_POSE_NAMES = ", ".join(c.split()[0] for c in _POSE_COLUMNS.split(", "))

INSERT_POSES = (
    f"INSERT INTO generated_poses ({_POSE_NAMES}, created_at) "
    f"SELECT {_POSE_NAMES}, %(now)s FROM json_to_recordset(%(rows)s::json) AS r({_POSE_COLUMNS}) "
    "ON CONFLICT (generation_id, variation_key) DO NOTHING "
    "RETURNING generation_id, variation_key"
)

ADD_COUNTS = (
    "UPDATE pose_generations AS g SET poses_completed = g.poses_completed + v.ok, "
    "poses_failed = g.poses_failed + v.bad "
    "FROM json_to_recordset(%(rows)s::json) AS v(id bigint, token bigint, ok int, bad int) "
    "WHERE g.id = v.id AND g.lease_token = v.token"
)

END_ROWS = (
    "UPDATE pose_generations AS g SET status = v.to_status, completed_at = %(now)s, "
    "lease_expires_at = NULL, error_kind = v.kind, error_message = v.message, "
    "error_detail = v.detail, "
    "poses_completed = v.ok, poses_failed = v.bad "
    "FROM json_to_recordset(%(rows)s::json) AS v(id bigint, token bigint, from_status text, "
    "to_status text, kind text, message text, ok int, bad int, detail text) "
    "WHERE g.id = v.id AND g.lease_token = v.token AND g.status = v.from_status "
    "AND (g.lease_expires_at IS NULL OR g.lease_expires_at < %(before)s)"
)

_EVENTS_FROM = "json_to_recordset(%(events)s::json) AS e(g bigint, k text, d json)"

INSERT_EVENTS = (
    "INSERT INTO generation_events (generation_id, kind, data, created_at) "
    f"SELECT g, k, d, %(now)s FROM {_EVENTS_FROM}"
)

_ROLLUP_FIELDS = (
    "generations",
    "completed",
    "partial",
    "failed",
    "cancelled",
    "poses_completed",
    "result_bytes",
    "reserved_bytes",
)
_ROLLUP_UPDATE = ", ".join(
    f"{f} = user_generation_stats.{f} + excluded.{f}" for f in _ROLLUP_FIELDS
)

# Data-modifying CTEs run exactly once whether or not the outer query reads them: rollup and
# events land together, and pg_notify fires only when asked, all in one round trip.
FLUSH = (
    "WITH r AS (INSERT INTO user_generation_stats (user_id, "
    + ", ".join(_ROLLUP_FIELDS)
    + ", updated_at) SELECT user_id, "
    + ", ".join(_ROLLUP_FIELDS)
    + ", %(now)s FROM json_to_recordset(%(rollup)s::json) AS u(user_id bigint, "
    + ", ".join(f"{f} bigint" for f in _ROLLUP_FIELDS)
    + f") ON CONFLICT (user_id) DO UPDATE SET {_ROLLUP_UPDATE}, updated_at = excluded.updated_at), "
    f"e AS ({INSERT_EVENTS}) "
    "SELECT CASE WHEN %(notify)s THEN pg_notify(%(channel)s, '') END"
)


def _json(rows: Sequence[dict[str, Any]]) -> str:
    # Enum members are str subclasses: json writes their values.
    return json.dumps(rows, separators=(",", ":"))


def fence(conn: Connection, ids: Sequence[int]) -> list[Any]:
    return list(conn.exec_driver_sql(FENCE, {"ids": sorted(set(ids))}))


def insert_poses(
    conn: Connection, rows: Sequence[dict[str, Any]], now: dt.datetime
) -> set[tuple[int, str]]:
    found = conn.exec_driver_sql(INSERT_POSES, {"now": now, "rows": _json(rows)})
    return {(int(g), str(k)) for g, k in found}


def add_counts(conn: Connection, items: Sequence[tuple[int, int, int, int]]) -> None:
    rows = [{"id": i, "token": t, "ok": ok, "bad": bad} for i, t, ok, bad in items]
    conn.exec_driver_sql(ADD_COUNTS, {"rows": _json(rows)})


def end_rows(
    conn: Connection, items: Sequence[EndRow], now: dt.datetime, expired_before: dt.datetime
) -> None:
    keys = ("id", "token", "from_status", "to_status", "kind", "message", "ok", "bad", "detail")
    rows = [dict(zip(keys, item, strict=True)) for item in items]
    conn.exec_driver_sql(END_ROWS, {"now": now, "before": expired_before, "rows": _json(rows)})


def _events(items: Sequence[tuple[int, str, dict[str, Any]]]) -> str:
    return _json([{"g": g, "k": k, "d": d} for g, k, d in items])


def insert_events(
    conn: Connection, items: Sequence[tuple[int, str, dict[str, Any]]], now: dt.datetime
) -> None:
    conn.exec_driver_sql(INSERT_EVENTS, {"now": now, "events": _events(items)})


def flush(
    conn: Connection,
    increments: list[dict[str, int]],
    event_items: Sequence[tuple[int, str, dict[str, Any]]],
    notify: bool,
    now: dt.datetime,
    channel: str,
) -> None:
    if not increments and not event_items and not notify:
        return
    conn.exec_driver_sql(
        FLUSH,
        {
            "now": now,
            "notify": notify,
            "channel": channel,
            "rollup": _json(increments),
            "events": _events(event_items),
        },
    )


_GEN_COLUMNS = (
    "user_id",
    "project_id",
    "type",
    "prompt",
    "negative_prompt",
    "selected_pose_ids",
    "variations",
    "total_expected_poses",
    "width",
    "height",
    "seed",
    "status",
    "priority",
    "poses_completed",
    "poses_failed",
    "attempts",
    "max_attempts",
    "run_after",
    "lease_token",
    "cancel_requested",
    "created_at",
    "idempotency_key",
    "request_hash",
    "reserved_bytes",
    "traceparent",
    "backend",
    "model",
    "credit_charged",
    "export_formats",
)

# One submit, one statement: the admission upsert of the user's rollup row (every per-user limit
# in its WHERE, checked under the row lock; see posegen.queue.quota), the row (only if admitted),
# the ``queued`` event and the NOTIFY. Run in autocommit it is a whole transaction in one round
# trip; a refused submit inserts nothing and sends no NOTIFY.
# A user on a live quota plan (their newest credit_plans row, posegen.credits.plans) is not
# admitted by the pay-as-you-go statement: it changes nothing, and the caller then reads the
# plan and submits through the quota's transaction. ``quota_day`` NULL: no such check (the
# quota path itself). Pay-as-you-go submits pay no extra round trip for plans.
_NOT_ON_QUOTA = (
    "AND (CAST(%(quota_day)s AS date) IS NULL OR NOT EXISTS (SELECT 1 FROM (SELECT plan, "
    "valid_until FROM credit_plans WHERE user_id = %(user_id)s ORDER BY id DESC LIMIT 1) AS cp "
    "WHERE cp.plan = 'quota' AND cp.valid_until >= CAST(%(quota_day)s AS date)))"
)

SUBMIT_ONE = (
    "WITH q AS ("
    + quota.admit_sql(lambda name: f"%({name})s", _NOT_ON_QUOTA)
    + "), g AS (INSERT INTO pose_generations ("
    + ", ".join(_GEN_COLUMNS)
    + ") SELECT "
    + ", ".join(
        f"CAST(%({c})s AS json)" if c in ("selected_pose_ids", "export_formats") else f"%({c})s"
        for c in _GEN_COLUMNS
    )
    + " FROM q RETURNING id, total_expected_poses, priority, created_at), "
    "e AS (INSERT INTO generation_events (generation_id, kind, data, created_at) "
    "SELECT id, 'queued', json_build_object('status', 'pending', 'completed', 0, 'failed', 0, "
    "'total', total_expected_poses, 'priority', priority), created_at FROM g), "
    # The charge (posegen.credits), only when there is a price: the balance moves and its
    # usage row lands with the generation. A balance that cannot cover it fails the users
    # CHECK, which rolls back the whole statement: nothing is queued, counted or charged.
    "c AS (UPDATE users SET credit_balance = credit_balance - %(credit_charged)s FROM g "
    "WHERE users.id = %(user_id)s AND %(credit_charged)s > 0), "
    "l AS (INSERT INTO credit_ledger (user_id, amount, kind, generation_id, idempotency_key, "
    "created_at) SELECT %(user_id)s, -%(credit_charged)s, 'usage', id, "
    "'usage:generation:' || id, created_at FROM g WHERE %(credit_charged)s > 0), "
    # One use of each of its poses (posegen.library.popularity), only when admitted.
     + popularity.uses_cte_pg("g") + ", "
    # The hour's credit rollup (posegen.credits.hourly), what the admin metrics sum.
    "h AS (INSERT INTO credit_hourly (user_id, hour, charged, refunded) "
    "SELECT %(user_id)s, %(credit_hour)s, %(credit_charged)s, 0 FROM g "
    "WHERE %(credit_charged)s > 0 ON CONFLICT (user_id, hour) DO UPDATE SET "
    "charged = credit_hourly.charged + excluded.charged) "
    "SELECT id, pg_notify(%(channel)s, '') FROM g"
)


def submit_one(
    conn: Connection, row: dict[str, Any], limits: quota.SubmitLimits, channel: str
) -> int | None:
    """Admit and insert one generation with its side effects; None when refused (a limit, or
    the project is not the user's: :func:`posegen.queue.quota.refusal` says which)."""
    params = {
        **quota.admit_params(
            row["user_id"], row["project_id"], row["reserved_bytes"], limits, row["created_at"]
        ),
        **row,
        "type": str(row["type"]),
        "status": str(row["status"]),
        "selected_pose_ids": json.dumps(row["selected_pose_ids"]),
        "export_formats": None
        if row.get("export_formats") is None
        else json.dumps(row["export_formats"]),
        "channel": channel,
        **popularity.use_params(row["selected_pose_ids"]),
        "credit_hour": hourly.hour_of(row["created_at"]),
        "quota_day": row.get("quota_day"),
    }
    found = conn.exec_driver_sql(SUBMIT_ONE, params).first()
    return None if found is None else int(found[0])


_RECORD_TYPES = {
    "user_id": "bigint",
    "project_id": "bigint",
    "type": "text",
    "prompt": "text",
    "negative_prompt": "text",
    "selected_pose_ids": "json",
    "variations": "int",
    "total_expected_poses": "int",
    "width": "int",
    "height": "int",
    "seed": "bigint",
    "status": "text",
    "priority": "int",
    "poses_completed": "int",
    "poses_failed": "int",
    "attempts": "int",
    "max_attempts": "int",
    "lease_token": "bigint",
    "cancel_requested": "boolean",
    "idempotency_key": "text",
    "request_hash": "text",
    "reserved_bytes": "bigint",
    "traceparent": "text",
    "backend": "text",
    "model": "text",
    "credit_charged": "bigint",
    "export_formats": "json",
}
_SCALAR_COLUMNS = ("run_after", "created_at")  # one value for the whole batch

# Many submits, one statement. Rows are inserted in input order (ORDER BY n), so the ids the
# sequence hands out ascend in input order and the sorted ids map back onto the requests.
SUBMIT_ROWS = (
    "WITH g AS (INSERT INTO pose_generations ("
    + ", ".join(_GEN_COLUMNS)
    + ") SELECT "
    + ", ".join(f"%({c})s" if c in _SCALAR_COLUMNS else c for c in _GEN_COLUMNS)
    # A record-returning function takes its column list inside ROWS FROM (...) to be
    # combined WITH ORDINALITY.
    + " FROM ROWS FROM (json_to_recordset(%(rows)s::json) AS ("
    + ", ".join(f"{c} {t}" for c, t in _RECORD_TYPES.items())
    + ")) WITH ORDINALITY AS v("
    + ", ".join(_RECORD_TYPES)
    + ", n) ORDER BY n "
    "RETURNING id, user_id, total_expected_poses, priority, created_at, reserved_bytes), "
    "r AS (INSERT INTO user_generation_stats "
    "(user_id, generations, completed, partial, failed, cancelled, poses_completed, "
    "reserved_bytes, updated_at) "
    "SELECT user_id, count(*), 0, 0, 0, 0, 0, sum(reserved_bytes), max(created_at) FROM g "
    "GROUP BY user_id ON CONFLICT (user_id) DO UPDATE SET "
    "generations = user_generation_stats.generations + excluded.generations, "
    "reserved_bytes = user_generation_stats.reserved_bytes + excluded.reserved_bytes, "
    "updated_at = excluded.updated_at), "
    "e AS (INSERT INTO generation_events (generation_id, kind, data, created_at) "
    "SELECT id, 'queued', json_build_object('status', 'pending', 'completed', 0, 'failed', 0, "
    "'total', total_expected_poses, 'priority', priority), created_at FROM g) "
    "SELECT array_agg(id ORDER BY id), pg_notify(%(channel)s, '') FROM g"
)


def submit_rows(conn: Connection, rows: Sequence[dict[str, Any]], channel: str) -> list[int]:
    """Insert generations with their side effects; ids in the order of ``rows``."""
    stamps = {c: rows[0][c] for c in _SCALAR_COLUMNS}
    if any(r[c] != stamps[c] for r in rows for c in _SCALAR_COLUMNS):
        raise ValueError("a bulk submit shares one run_after and created_at")
    records = [{c: r[c] for c in _RECORD_TYPES} for r in rows]
    found = conn.exec_driver_sql(
        SUBMIT_ROWS, {**stamps, "rows": _json(records), "channel": channel}
    ).first()
    ids = [] if found is None or found[0] is None else [int(i) for i in found[0]]
    if len(ids) != len(rows):
        raise RuntimeError(f"inserted {len(ids)} of {len(rows)} generations")
    return ids
