"""PostgreSQL batch statements for lease holders: each takes whole columns as arrays
(``unnest``), so a batch of any size is one statement with a constant text that psycopg
prepares once, instead of one statement per row or a new multi-row text per batch size."""

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
    "WHERE id = ANY(%(ids)s::bigint[]) AND status = 'processing' ORDER BY id FOR UPDATE"
)

INSERT_POSES = (
    "INSERT INTO generated_poses (generation_id, variation_key, pose_id, variation_index, "
    "status, image_path, thumbnail_path, seed, prompt_used, duration_ms, error_kind, "
    "error_message, metadata, created_at) "
    "SELECT g, k, p, i, s, im, th, sd, pr, du, ek, em, CAST(md AS json), %(now)s FROM unnest("
    "%(g)s::bigint[], %(k)s::text[], %(p)s::bigint[], %(i)s::int[], %(s)s::text[], "
    "%(im)s::text[], %(th)s::text[], %(sd)s::bigint[], %(pr)s::text[], %(du)s::int[], "
    "%(ek)s::text[], %(em)s::text[], %(md)s::text[]) AS v(g, k, p, i, s, im, th, sd, pr, du, "
    "ek, em, md) "
    "ON CONFLICT (generation_id, variation_key) DO NOTHING "
    "RETURNING generation_id, variation_key"
)

ADD_COUNTS = (
    "UPDATE pose_generations AS g SET poses_completed = g.poses_completed + v.ok, "
    "poses_failed = g.poses_failed + v.bad "
    "FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(ok)s::int[], %(bad)s::int[]) "
    "AS v(id, token, ok, bad) WHERE g.id = v.id AND g.lease_token = v.token"
)

END_ROWS = (
    "UPDATE pose_generations AS g SET status = v.to_status, completed_at = %(now)s, "
    "lease_expires_at = NULL, error_kind = v.kind, error_message = v.message "
    "FROM unnest(%(ids)s::bigint[], %(tokens)s::bigint[], %(froms)s::text[], "
    "%(tos)s::text[], %(kinds)s::text[], %(messages)s::text[]) "
    "AS v(id, token, from_status, to_status, kind, message) "
    "WHERE g.id = v.id AND g.lease_token = v.token AND g.status = v.from_status "
    "AND (g.lease_expires_at IS NULL OR g.lease_expires_at < %(before)s)"
)

INSERT_EVENTS = (
    "INSERT INTO generation_events (generation_id, kind, data, created_at) "
    "SELECT g, k, CAST(d AS json), %(now)s "
    "FROM unnest(%(g)s::bigint[], %(k)s::text[], %(d)s::text[]) AS v(g, k, d)"
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
    ids, tokens, froms, tos, kinds, messages = (list(c) for c in zip(*items, strict=True))
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
    "SELECT u, g, c, p, f, x, pc, %(now)s FROM unnest(%(u)s::bigint[], %(g)s::bigint[], "
    "%(c)s::bigint[], %(p)s::bigint[], %(f)s::bigint[], %(x)s::bigint[], %(pc)s::bigint[]) "
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
    "FROM unnest(%(eg)s::bigint[], %(ek)s::text[], %(ed)s::text[]) AS w(eg, ek, ed)) "
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
