"""``posegen db verify``: the seed's "verify indexes were created / expect Index Scan" as code."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, inspect, text

from posegen.db import hot_queries
from posegen.db.engine import database_errors
from posegen.db.migrate import current, head_revision
from posegen.db.models import REQUIRED_INDEXES


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def verify(engine: Engine) -> Report:
    report = Report()
    with database_errors():
        rev, head = current(engine), head_revision()
        report.checks.append(
            Check("migrations", rev == head, f"at {rev or 'nothing'}, head is {head}")
        )
        insp = inspect(engine)
        tables = set(insp.get_table_names())
        for index, table in REQUIRED_INDEXES.items():
            names: set[str] = set()
            if table in tables:
                names |= {i["name"] for i in insp.get_indexes(table) if i["name"]}
                names |= {u["name"] for u in insp.get_unique_constraints(table) if u["name"]}
            found = index in names
            report.checks.append(
                Check(f"index {index}", found, f"on {table}" if found else f"missing on {table}")
            )
        if report.ok:
            for query in hot_queries.ALL:
                if query.dialect not in (None, engine.dialect.name):
                    continue
                used = explain_uses_index(engine, query)
                detail = f"plan uses {query.index}" if used else f"plan does not use {query.index}"
                if used and query.index_column is not None:
                    detail += f" on {query.index_column}"
                report.checks.append(Check(f"plan {query.name}", used, detail))
    return report


def explain_uses_index(engine: Engine, query: hot_queries.HotQuery) -> bool:
    """EXPLAIN the query and look for its index anywhere in the plan.

    On SQLite, ``EXPLAIN QUERY PLAN`` names the index in its detail column.

    Sequential scans are disabled for the EXPLAIN: on a small or new table the planner rightly
    prefers them, and the question here is whether the index *can* serve the query at all (a
    partial index whose predicate the query does not imply, or a column order that does not
    match the ORDER BY, shows up as a plan without it).

    With ``query.index_column``, the index must also match on that column (SQLite:
    ``USING INDEX name (column=?``; PostgreSQL: the column in the node's ``Index Cond``).
    """
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            details = conn.execute(
                text("EXPLAIN QUERY PLAN " + query.sql), query.explain_params
            ).all()
        want = f"INDEX {query.index}"
        if query.index_column is not None:
            want += f" ({query.index_column}=?"
        return any(want in str(row[-1]) for row in details)
    with engine.connect() as conn, conn.begin():
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        rows = conn.execute(
            text("EXPLAIN (FORMAT JSON) " + query.sql), query.explain_params
        ).scalar_one()
        plan = rows if isinstance(rows, list) else json.loads(rows)
    conds = _index_conds(plan)
    if query.index not in conds:
        return False
    # PostgreSQL writes a varchar comparison as ``((backend)::text = 'x'::text)``.
    column = re.compile(rf"\(\(?{re.escape(query.index_column or '')}\)?(::\w+)? =")
    return query.index_column is None or any(column.search(c) for c in conds[query.index])


def _index_conds(node: Any) -> dict[str, list[str]]:
    """Index name -> the ``Index Cond`` texts of the plan nodes that use it."""
    found: dict[str, list[str]] = {}
    if isinstance(node, dict):
        name = node.get("Index Name")
        if isinstance(name, str):
            found.setdefault(name, []).append(str(node.get("Index Cond", "")))
        for value in node.values():
            if isinstance(value, dict | list):
                for k, v in _index_conds(value).items():
                    found.setdefault(k, []).extend(v)
    elif isinstance(node, list):
        for item in node:
            for k, v in _index_conds(item).items():
                found.setdefault(k, []).extend(v)
    return found
