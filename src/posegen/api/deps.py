"""Request dependencies: settings, engine, and the one dependency that decides roles.

Settings, engine and the key cache live on ``app.state`` (built by :func:`create_app`), never in
module globals, so several apps with different databases can live in one process (the tests do).
"""

from __future__ import annotations

import threading
import time
from typing import Annotated

import anyio
from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine

from posegen import accounts, observe
from posegen.accounts import Account
from posegen.api import sse
from posegen.config import Settings
from posegen.db.models import Role
from posegen.exceptions import Forbidden, Unauthorized

#: Higher rank includes every right of the lower ones.
_RANK = {Role.USER: 0, Role.ADMIN: 1}

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer pg_...`")


class KeyCache:
    """Short-lived map of key hash -> account, so most requests need no database round trip.

    A revoked key keeps working in *other* processes for at most ``ttl`` seconds; this process
    forgets revoked keys at once (:meth:`clear`). ``last_used_at`` is written at most once per
    ``touch_every`` seconds per key and process, so authentication is not a write per request.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, ttl: float, touch_every: float = 60.0) -> None:
        self.ttl = ttl
        self.touch_every = touch_every
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Account | None]] = {}
        self._touched: dict[str, float] = {}

    def get(self, key_hash: str) -> tuple[bool, Account | None]:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key_hash)
        if hit is None or hit[0] < now:
            return False, None
        return True, hit[1]

    def put(self, key_hash: str, account: Account | None) -> None:
        if self.ttl <= 0:
            return
        now = time.monotonic()
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
                if len(self._entries) >= self.MAX_ENTRIES:
                    self._entries.clear()
            self._entries[key_hash] = (now + self.ttl, account)

    def should_touch(self, key_hash: str) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._touched.get(key_hash)
            if last is not None and now - last < self.touch_every:
                return False
            if len(self._touched) >= self.MAX_ENTRIES:
                self._touched.clear()
            self._touched[key_hash] = now
            return True

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# Async on purpose: FastAPI runs a plain ``def`` dependency in the thread pool, which would cost
# every request a thread hop for an attribute read (the hop dominated a cached metrics answer).
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


#: A row id in a path: BIGINT range, so no out-of-range number reaches the database driver.
PathId = Annotated[int, Path(ge=1, le=2**63 - 1, examples=[1])]

SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]


def _lookup(engine: Engine, cache: KeyCache, api_key: str) -> Account | None:
    key_hash = accounts.hash_key(api_key)
    account = accounts.authenticate(engine, api_key)
    cache.put(key_hash, account)
    if account is not None and cache.should_touch(key_hash):
        accounts.touch_key(engine, api_key)
    return account


async def _authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Account:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    api_key = credentials.credentials
    cache: KeyCache = request.app.state.key_cache
    found, account = cache.get(accounts.hash_key(api_key))
    if not found:
        route = request.scope.get("route")
        if getattr(route, "name", None) in sse.STREAM_ROUTES:
            # An event stream's lookup waits on the threads reserved for opening streams.
            account = await anyio.to_thread.run_sync(
                _lookup,
                request.app.state.engine,
                cache,
                api_key,
                limiter=sse.open_limiter(request.app.state),
            )
        else:
            account = await run_in_threadpool(_lookup, request.app.state.engine, cache, api_key)
    if account is None:
        raise Unauthorized("invalid or revoked API key")
    observe.bind(user_id=account.id)  # the rest of the request's log lines name the user
    return account


def requires(minimum: Role) -> object:
    """The dependency that decides roles: the caller's role must rank at least ``minimum``."""

    # Takes the bearer credentials itself and calls _authenticated as a function: each level of
    # sub-dependency costs FastAPI's resolver ~20 us per request (bench/profile_api.py).
    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Account:
        account = await _authenticated(request, credentials)
        if _RANK[account.role] < _RANK[minimum]:
            raise Forbidden(f"this needs the {minimum.value} role")
        return account

    return Depends(dependency)


CurrentUser = Annotated[Account, requires(Role.USER)]
AdminUser = Annotated[Account, requires(Role.ADMIN)]


def is_admin(account: Account) -> bool:
    return _RANK[account.role] >= _RANK[Role.ADMIN]
