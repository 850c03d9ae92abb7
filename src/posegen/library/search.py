"""Text search and tag filters, the two places the engines differ (the k_library migration made
the objects these read).

PostgreSQL: the generated ``search_tsv`` column (name A, tags B, description C, slug D;
English stemming) matched with ``websearch_to_tsquery`` (what people type: words, "quoted
phrases", -not) through its GIN index, ranked by ``ts_rank``; tags by jsonb containment, found
through the same GIN index (the column holds the tags unstemmed too: each tag's words are a
superset condition the index serves, the containment the exact one). SQLite: the FTS5 table
``pose_library_fts`` (Porter stemming), every word required, ranked by BM25 with the same column
weights; tags by their JSON text.

Both give a relevance score where higher is better, so keyset pages read the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Float, String, and_, bindparam, cast, func, literal_column, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from posegen.db.models import PoseLibrary as L

_WORD = re.compile(r"\w+", re.UNICODE)
#: What PostgreSQL's parser makes a lexeme of (letters, digits).
_LEXEME = re.compile(r"[^\W_]", re.UNICODE)
#: At most this many words of a query are searched for.
MAX_WORDS = 16
FTS_TABLE = "pose_library_fts"


@dataclass(frozen=True)
class TextMatch:
    """How to filter by a text query: the rows' condition, the relevance score, and (SQLite)
    the FTS table to join on ``rowid = pose_library.id``."""

    where: ColumnElement[bool]
    score: ColumnElement[float]
    join_fts: bool


def words(q: str) -> list[str]:
    """The words of a query (what both engines search for); none: no text filter."""
    return _WORD.findall(q.lower())[:MAX_WORDS]


def text_match(dialect: str, q: str) -> TextMatch | None:
    """The text filter for ``q`` on this engine; None when ``q`` has no words."""
    found = words(q)
    if not found:
        return None
    if dialect == "postgresql":
        tsv: ColumnElement[Any] = literal_column("pose_library.search_tsv")
        query = func.websearch_to_tsquery(literal_column("'english'"), q[:500])
        return TextMatch(tsv.op("@@")(query), cast(func.ts_rank(tsv, query), Float), join_fts=False)
    # Each word quoted: FTS5 query syntax in the input is never interpreted.
    expr = " ".join('"' + w.replace('"', '""') + '"' for w in found)
    fts: ColumnElement[Any] = literal_column(FTS_TABLE)
    score = -func.bm25(fts, 10.0, 5.0, 2.0, 1.0)  # name, description, tags, slug
    return TextMatch(fts.op("MATCH")(expr), type_coerce(score, Float), join_fts=True)


def has_tags(dialect: str, tags: Sequence[str]) -> ColumnElement[bool]:
    """Rows carrying every one of ``tags`` (lower-case, as stored)."""
    wanted = sorted({t.strip().lower() for t in tags if t.strip()})
    if dialect == "postgresql":
        tsv: ColumnElement[Any] = literal_column("pose_library.search_tsv")
        found = [
            tsv.op("@@")(func.plainto_tsquery(literal_column("'simple'"), t))
            for t in wanted
            if _LEXEME.search(t)  # a tag of no word at all yields no lexeme: no index help
        ]
        exact = cast(L.tags, JSONB).op("@>")(bindparam(None, wanted, type_=JSONB))
        return and_(*found, exact)
    conditions: list[Any] = [
        cast(L.tags, String).like(f"%{_like_escape(json.dumps(t))}%", escape="\\") for t in wanted
    ]
    return and_(*conditions)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
