"""PostgreSQL batch statements for lease holders: each takes whole columns as arrays
(``unnest``), so a batch of any size is one statement with a constant text that psycopg
prepares once, instead of one statement per row or a new multi-row text per batch size.

Arrays travel in binary (``%(name)b``): in text format every string element is escaped with a
regular expression on the client, which cost more than the rest of the batch."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection

from posegen.queue.bulk_core import EndRow

_LIVE = (
    "id, lease_token, user_id, status, cancel_requested, attempts, max_attempts, "
    "poses_completed, poses_failed, total_expected_poses, deadline_at, lease_expires_at"
)

FENCE = (
    f"SELECT {_LIVE} FROM pose_generations "
    "WHERE id = ANY(%(ids)b::bigint[]) AND status = 'processing' ORDER BY id FOR UPDATE"
)

INSERT_POSES = (
    "INSERT INTO generated_poses (generation_id, variation_key, pose_id, variation_index, "
    "status, image_path, thumbnail_path, seed, prompt_used, duration_ms, error_kind, "
    "error_message, metadata, created_at) "
    "SELECT g, k, p, i, s, im, th, sd, pr, du, ek, em, CAST(md AS json), %(now)s FROM unnest("
    "%(g)b::bigint[], %(k)b::text[], %(p)b::bigint[], %(i)b::int[], %(s)b::text[], "
    "%(im)b::text[], %(th)b::text[], %(sd)b::bigint[], %(pr)b::text[], %(du)b::int[], "
    "%(ek)b::text[], %(em)b::text[], %(md)b::text[]) AS v(g, k, p, i, s, im, th, sd, pr, du, "
    "ek, em, md) "
    "ON CONFLICT (generation_id, variation_key) DO NOTHING "
    "RETURNING generation_id, variation_key"
)

ADD_COUNTS = (
    "UPDATE pose_generations AS g SET poses_completed = g.poses_completed + v.ok, "
    "poses_failed = g.poses_failed + v.bad "
    "FROM unnest(%(ids)b::bigint[], %(tokens)b::bigint[], %(ok)b::int[], %(bad)b::int[]) "
    "AS v(id, token, ok, bad) WHERE g.id = v.id AND g.lease_token = v.token"
)

END_ROWS = (
    "UPDATE pose_generations AS g SET status = v.to_status, completed_at = %(now)s, "
    "lease_expires_at = NULL, error_kind = v.kind, error_message = v.message, "
    "poses_completed = v.ok, poses_failed = v.bad "
    "FROM unnest(%(ids)b::bigint[], %(tokens)b::bigint[], %(froms)b::text[], "
    "%(tos)b::text[], %(kinds)b::text[], %(messages)b::text[], %(ok)b::int[], %(bad)b::int[]) "
    "AS v(id, token, from_status, to_status, kind, message, ok, bad) "
    "WHERE g.id = v.id AND g.lease_token = v.token AND g.status = v.from_status "
    "AND (g.lease_expires_at IS NULL OR g.lease_expires_at < %(before)s)"
)

INSERT_EVENTS = (
    "INSERT INTO generation_events (generation_id, kind, data, created_at) "
    "SELECT g, k, CAST(d AS json), %(now)s "
    "FROM unnest(%(g)b::bigint[], %(k)b::text[], %(d)b::text[]) AS v(g, k, d)"
)


def fence(conn: Connection, ids: Sequence[int]) -> list[Any]:
    return list(conn.exec_driver_sql(FENCE, {"ids": sorted(set(ids))}))


def insert_poses(
    conn: Connection, rows: Sequence[dict[str, Any]], now: dt.datetime
) -> set[tuple[int, str]]:
    def col(name: str) -> list[Any]:
        return [r[name] for r in rows]

    params = {
        "now": now,
        "g": col("generation_id"),
        "k": col("variation_key"),
        "p": col("pose_id"),
        "i": col("variation_index"),
        "s": [str(v) for v in col("status")],
        "im": col("image_path"),
        "th": col("thumbnail_path"),
        "sd": col("seed"),
        "pr": col("prompt_used"),
        "du": col("duration_ms"),
        "ek": col("error_kind"),
        "em": col("error_message"),
        "md": [None if m is None else json.dumps(m) for m in col("metadata")],
    }
    return {(int(g), str(k)) for g, k in conn.exec_driver_sql(INSERT_POSES, params)}


def add_counts(conn: Connection, items: Sequence[tuple[int, int, int, int]]) -> None:
    ids, tokens, ok, bad = (list(c) for c in zip(*items, strict=True))
    conn.exec_driver_sql(ADD_COUNTS, {"ids": ids, "tokens": tokens, "ok": ok, "bad": bad})


def end_rows(
    conn: Connection, items: Sequence[EndRow], now: dt.datetime, expired_before: dt.datetime
) -> None:
    ids, tokens, froms, tos, kinds, messages, ok, bad = (list(c) for c in zip(*items, strict=True))
    conn.exec_driver_sql(
        END_ROWS,
        {
            "now": now,
            "before": expired_before,
            "ids": ids,
            "tokens": tokens,
            "froms": [str(v) for v in froms],
            "tos": [str(v) for v in tos],
            "kinds": kinds,
            "messages": messages,
            "ok": ok,
            "bad": bad,
        },
    )


def insert_events(
    conn: Connection, items: Sequence[tuple[int, str, dict[str, Any]]], now: dt.datetime
) -> None:
    conn.exec_driver_sql(
        INSERT_EVENTS,
        {
            "now": now,
            "g": [g for g, _, _ in items],
            "k": [k for _, k, _ in items],
            "d": [json.dumps(d) for _, _, d in items],
        },
    )


_ROLLUP_FIELDS = ("generations", "completed", "partial", "failed", "cancelled", "poses_completed")

# Data-modifying CTEs run exactly once whether or not the outer query reads them: rollup and
# events land together, and pg_notify fires only when asked, all in one round trip.
FLUSH = (
    "WITH r AS (INSERT INTO user_generation_stats "
    "(user_id, generations, completed, partial, failed, cancelled, poses_completed, updated_at) "
    "SELECT u, g, c, p, f, x, pc, %(now)s FROM unnest(%(u)b::bigint[], %(g)b::bigint[], "
    "%(c)b::bigint[], %(p)b::bigint[], %(f)b::bigint[], %(x)b::bigint[], %(pc)b::bigint[]) "
    "AS v(u, g, c, p, f, x, pc) "
    "ON CONFLICT (user_id) DO UPDATE SET "
    "generations = user_generation_stats.generations + excluded.generations, "
    "completed = user_generation_stats.completed + excluded.completed, "
    "partial = user_generation_stats.partial + excluded.partial, "
    "failed = user_generation_stats.failed + excluded.failed, "
    "cancelled = user_generation_stats.cancelled + excluded.cancelled, "
    "poses_completed = user_generation_stats.poses_completed + excluded.poses_completed, "
    "updated_at = excluded.updated_at), "
    "e AS (INSERT INTO generation_events (generation_id, kind, data, created_at) "
    "SELECT eg, ek, CAST(ed AS json), %(now)s "
    "FROM unnest(%(eg)b::bigint[], %(ek)b::text[], %(ed)b::text[]) AS w(eg, ek, ed)) "
    "SELECT CASE WHEN %(notify)s THEN pg_notify(%(channel)s, '') END"
)


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
    params: dict[str, Any] = {
        "now": now,
        "notify": notify,
        "channel": channel,
        "u": [r["user_id"] for r in increments],
        "eg": [g for g, _, _ in event_items],
        "ek": [k for _, k, _ in event_items],
        "ed": [json.dumps(d) for _, _, d in event_items],
    }
    for key, name in zip(("g", "c", "p", "f", "x", "pc"), _ROLLUP_FIELDS, strict=True):
        params[key] = [r[name] for r in increments]
    conn.exec_driver_sql(FLUSH, params)


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
)

# One submit, one statement: the row (only if the project is the user's), the rollup, the
# ``queued`` event and the NOTIFY. Run in autocommit it is a whole transaction in one round trip.
SUBMIT_ONE = (
    "WITH g AS (INSERT INTO pose_generations ("
    + ", ".join(_GEN_COLUMNS)
    + ") SELECT "
    + ", ".join(
        "CAST(%(selected_pose_ids)s AS json)" if c == "selected_pose_ids" else f"%({c})s"
        for c in _GEN_COLUMNS
    )
    + " FROM projects WHERE id = %(project_id)s AND user_id = %(user_id)s "
    "RETURNING id, user_id, total_expected_poses, priority, created_at), "
    "r AS (INSERT INTO user_generation_stats "
    "(user_id, generations, completed, partial, failed, cancelled, poses_completed, updated_at) "
    "SELECT user_id, 1, 0, 0, 0, 0, 0, created_at FROM g ON CONFLICT (user_id) DO UPDATE SET "
    "generations = user_generation_stats.generations + 1, updated_at = excluded.updated_at), "
    "e AS (INSERT INTO generation_events (generation_id, kind, data, created_at) "
    "SELECT id, 'queued', json_build_object('status', 'pending', 'completed', 0, 'failed', 0, "
    "'total', total_expected_poses, 'priority', priority), created_at FROM g) "
    "SELECT id, pg_notify(%(channel)s, '') FROM g"
)


def submit_one(conn: Connection, row: dict[str, Any], channel: str) -> int | None:
    """Insert one generation with its side effects; None when the project is not the user's."""
    params = {
        **row,
        "type": str(row["type"]),
        "status": str(row["status"]),
        "selected_pose_ids": json.dumps(row["selected_pose_ids"]),
        "channel": channel,
    }
    found = conn.exec_driver_sql(SUBMIT_ONE, params).first()
    return None if found is None else int(found[0])


_ARRAY_TYPES = {
    "user_id": "bigint",
    "project_id": "bigint",
    "type": "text",
    "prompt": "text",
    "negative_prompt": "text",
    "selected_pose_ids": "text",
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
    "run_after": "timestamptz",
    "lease_token": "bigint",
    "cancel_requested": "boolean",
    "created_at": "timestamptz",
    "idempotency_key": "text",
    "request_hash": "text",
}

# Many submits, one statement. Rows are inserted in input order (ORDER BY n), so the ids the
# sequence hands out ascend in input order and the sorted ids map back onto the requests.
SUBMIT_ROWS = (
    "WITH v AS (SELECT * FROM unnest("
    + ", ".join(f"%({c})b::{t}[]" for c, t in _ARRAY_TYPES.items())
    + ") WITH ORDINALITY AS v("
    + ", ".join(_GEN_COLUMNS)
    + ", n)), "
    "g AS (INSERT INTO pose_generations ("
    + ", ".join(_GEN_COLUMNS)
    + ") SELECT "
    + ", ".join(
        "CAST(selected_pose_ids AS json)" if c == "selected_pose_ids" else c for c in _GEN_COLUMNS
    )
    + " FROM v ORDER BY n RETURNING id, user_id, total_expected_poses, priority, created_at), "
    "r AS (INSERT INTO user_generation_stats "
    "(user_id, generations, completed, partial, failed, cancelled, poses_completed, updated_at) "
    "SELECT user_id, count(*), 0, 0, 0, 0, 0, max(created_at) FROM g GROUP BY user_id "
    "ON CONFLICT (user_id) DO UPDATE SET "
    "generations = user_generation_stats.generations + excluded.generations, "
    "updated_at = excluded.updated_at), "
    "e AS (INSERT INTO generation_events (generation_id, kind, data, created_at) "
    "SELECT id, 'queued', json_build_object('status', 'pending', 'completed', 0, 'failed', 0, "
    "'total', total_expected_poses, 'priority', priority), created_at FROM g) "
    "SELECT array_agg(id ORDER BY id), pg_notify(%(channel)s, '') FROM g"
)


def submit_rows(conn: Connection, rows: Sequence[dict[str, Any]], channel: str) -> list[int]:
    """Insert generations with their side effects; ids in the order of ``rows``."""
    params: dict[str, Any] = {c: [r[c] for r in rows] for c in _GEN_COLUMNS}
    params["type"] = [str(v) for v in params["type"]]
    params["status"] = [str(v) for v in params["status"]]
    params["selected_pose_ids"] = [json.dumps(v) for v in params["selected_pose_ids"]]
    params["channel"] = channel
    found = conn.exec_driver_sql(SUBMIT_ROWS, params).first()
    ids = [] if found is None or found[0] is None else [int(i) for i in found[0]]
    if len(ids) != len(rows):
        raise RuntimeError(f"inserted {len(ids)} of {len(rows)} generations")
    return ids
