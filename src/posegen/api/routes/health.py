"""Liveness and readiness probes: no authentication, no details beyond ok / not ok."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.exc import SQLAlchemyError

from posegen.api.deps import EngineDep
from posegen.api.schemas import HealthOut, ReadyOut
from posegen.db import migrate
from posegen.exceptions import DatabaseUnavailable, PosegenError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut, summary="The process is alive")
async def healthz() -> HealthOut:
    return HealthOut(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyOut,
    summary="The database is reachable and migrated to head",
    responses={503: {"description": "Not ready"}},
)
def readyz(engine: EngineDep) -> ReadyOut:
    try:
        at_head = migrate.is_at_head(engine)
    except (PosegenError, SQLAlchemyError) as exc:
        raise DatabaseUnavailable("database not reachable") from exc
    if not at_head:
        raise DatabaseUnavailable(
            "database schema is not at the head revision", kind="not-migrated"
        )
    return ReadyOut(status="ready", database="ok", migrations="head")
