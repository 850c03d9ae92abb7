"""Admin: queue recovery, the worker fleet, users and API keys. Every route needs the admin role."""

from __future__ import annotations

import os
import socket
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from posegen import accounts, operations, queue
from posegen.api.deps import AdminUser, EngineDep, PathId, SettingsDep
from posegen.api.openapi import problems
from posegen.api.schemas import (
    NewKeyOut,
    RecoveryOut,
    RecoveryRunOut,
    RecoveryRunResult,
    RevokedOut,
    UserCreate,
    UserOut,
    WorkerOut,
)

router = APIRouter(prefix="/admin", tags=["admin"])

KeyPrefix = Annotated[
    str,
    Path(min_length=6, max_length=10, pattern=r"^pg_[A-Za-z0-9_-]+$", description="Key prefix."),
]


@router.get("/recovery", response_model=RecoveryOut)
def recovery_status(admin: AdminUser, engine: EngineDep) -> RecoveryOut:
    """Queued, processing and stuck (expired lease) counts, and the last recovery run."""
    status = operations.recovery_status(engine)
    last = status.last_run
    return RecoveryOut(
        queued=status.queued,
        processing=status.processing,
        stuck=status.stuck,
        last_run=None
        if last is None
        else RecoveryRunOut.model_validate(last, from_attributes=True),
    )


@router.post("/recovery/run", response_model=RecoveryRunResult)
def run_recovery(admin: AdminUser, engine: EngineDep, settings: SettingsDep) -> RecoveryRunResult:
    """Run one recovery pass now (expired leases back to pending, or failed when exhausted)."""
    runner = f"api:{socket.gethostname()}:{os.getpid()}"
    outcome = queue.recover(engine, settings, runner)
    return RecoveryRunResult(
        requeued=outcome.requeued,
        failed=outcome.failed,
        cancelled=outcome.cancelled,
        ran=outcome.ran,
    )


@router.get("/workers", response_model=list[WorkerOut])
def list_workers(
    admin: AdminUser,
    engine: EngineDep,
    settings: SettingsDep,
    include_stopped: Annotated[bool, Query(alias="includeStopped")] = False,
) -> list[WorkerOut]:
    """Registered workers; `alive` = not stopped and seen within the stale window."""
    rows = operations.workers(
        engine, settings.worker_stale_seconds, include_stopped=include_stopped
    )
    return [WorkerOut.model_validate(w, from_attributes=True) for w in rows]


def _user_out(account: accounts.Account, active_keys: int | None = None) -> UserOut:
    return UserOut(
        id=account.id,
        name=account.name,
        email=account.email,
        role=account.role,
        active_keys=active_keys,
    )


def _new_key_out(new: accounts.NewKey) -> NewKeyOut:
    return NewKeyOut(user=_user_out(new.account), api_key=new.api_key, prefix=new.api_key[:10])


@router.get("/users", response_model=list[UserOut])
def list_users(admin: AdminUser, engine: EngineDep) -> list[UserOut]:
    return [_user_out(r.account, r.active_keys) for r in accounts.list_users(engine)]


@router.post("/users", status_code=201, response_model=NewKeyOut, responses=problems(409))
def create_user(body: UserCreate, admin: AdminUser, engine: EngineDep) -> NewKeyOut:
    """Create a user with a first API key (shown once)."""
    return _new_key_out(accounts.create_user(engine, body.name, body.email, body.role))


@router.post(
    "/users/{user_id}/keys", status_code=201, response_model=NewKeyOut, responses=problems(404)
)
def issue_key(user_id: PathId, admin: AdminUser, engine: EngineDep) -> NewKeyOut:
    """Give a user another API key (shown once)."""
    account = accounts.get_by_id(engine, user_id)
    return _new_key_out(accounts.issue_key(engine, account.email))


@router.delete("/users/{user_id}/keys", response_model=RevokedOut, responses=problems(404))
def revoke_user_keys(
    request: Request, user_id: PathId, admin: AdminUser, engine: EngineDep
) -> RevokedOut:
    """Revoke every active key of a user."""
    account = accounts.get_by_id(engine, user_id)
    count = accounts.revoke_keys(engine, email=account.email)
    request.app.state.key_cache.clear()
    return RevokedOut(revoked=count)


@router.delete("/keys/{prefix}", response_model=RevokedOut, responses=problems(404))
def revoke_key(
    request: Request, prefix: KeyPrefix, admin: AdminUser, engine: EngineDep
) -> RevokedOut:
    """Revoke the active keys starting with `prefix` (the first 10 characters of a key)."""
    count = accounts.revoke_keys(engine, prefix=prefix)
    request.app.state.key_cache.clear()
    return RevokedOut(revoked=count)
