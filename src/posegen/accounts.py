"""Users and API keys. A key is shown once; only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import ApiKey, Role, User
from posegen.db.types import utcnow
from posegen.exceptions import Conflict, InvalidInput, NotFound

KEY_PREFIX = "pg_"


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    email: str
    role: Role


@dataclass(frozen=True)
class NewKey:
    account: Account
    api_key: str


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def _new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def _check_email(email: str) -> str:
    email = email.strip().lower()
    local, _, domain = email.partition("@")
    if not local or "." not in domain or " " in email or len(email) > 320:
        raise InvalidInput(f"not an e-mail address: {email!r}")
    return email


def create_user(engine: Engine, name: str, email: str, role: Role = Role.USER) -> NewKey:
    """Create a user with a first API key."""
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput("name must be 1-200 characters")
    email = _check_email(email)
    key = _new_key()
    try:
        with write_transaction(engine) as conn:
            user_id = conn.execute(
                insert(User).values(name=name, email=email, role=role).returning(User.id)
            ).scalar_one()
            conn.execute(
                insert(ApiKey).values(user_id=user_id, key_hash=hash_key(key), prefix=key[:10])
            )
    except IntegrityError as exc:
        raise Conflict(f"a user with e-mail {email} already exists") from exc
    return NewKey(Account(user_id, name, email, role), key)


def issue_key(engine: Engine, email: str) -> NewKey:
    """Give an existing user one more API key."""
    account = get_by_email(engine, email)
    key = _new_key()
    with write_transaction(engine) as conn:
        conn.execute(
            insert(ApiKey).values(user_id=account.id, key_hash=hash_key(key), prefix=key[:10])
        )
    return NewKey(account, key)


def revoke_keys(engine: Engine, *, email: str | None = None, prefix: str | None = None) -> int:
    """Revoke every key of a user, or the keys starting with ``prefix``. Returns how many."""
    if (email is None) == (prefix is None):
        raise InvalidInput("give either an e-mail or a key prefix")
    stmt = update(ApiKey).where(ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
    if email is not None:
        stmt = stmt.where(ApiKey.user_id == get_by_email(engine, email).id)
    else:
        assert prefix is not None
        if len(prefix) < 6:
            raise InvalidInput("a key prefix needs at least 6 characters")
        stmt = stmt.where(ApiKey.prefix == prefix[:10])
    with write_transaction(engine) as conn:
        count = conn.execute(stmt).rowcount
    if count == 0:
        raise NotFound("no active key matched")
    return count


def get_by_email(engine: Engine, email: str) -> Account:
    with read_connection(engine) as conn:
        row = conn.execute(
            select(User.id, User.name, User.email, User.role).where(
                User.email == email.strip().lower()
            )
        ).first()
    if row is None:
        raise NotFound(f"no user with e-mail {email}")
    return Account(row.id, row.name, row.email, Role(row.role))


def get_by_id(engine: Engine, user_id: int) -> Account:
    with read_connection(engine) as conn:
        row = conn.execute(
            select(User.id, User.name, User.email, User.role).where(User.id == user_id)
        ).first()
    if row is None:
        raise NotFound(f"no user {user_id}")
    return Account(row.id, row.name, row.email, Role(row.role))


def authenticate(engine: Engine, api_key: str) -> Account | None:
    """The account an unrevoked key belongs to, or None."""
    if not api_key.startswith(KEY_PREFIX) or len(api_key) > 100:
        return None
    with read_connection(engine) as conn:
        row = conn.execute(
            select(User.id, User.name, User.email, User.role)
            .join(ApiKey, ApiKey.user_id == User.id)
            .where(ApiKey.key_hash == hash_key(api_key), ApiKey.revoked_at.is_(None))
        ).first()
    return None if row is None else Account(row.id, row.name, row.email, Role(row.role))


def touch_key(engine: Engine, api_key: str) -> None:
    """Record a key's last use (callers throttle this; it is a write)."""
    with write_transaction(engine) as conn:
        conn.execute(
            update(ApiKey).where(ApiKey.key_hash == hash_key(api_key)).values(last_used_at=utcnow())
        )


@dataclass(frozen=True)
class AccountRow:
    account: Account
    active_keys: int


def list_users(engine: Engine) -> list[AccountRow]:
    active = (
        select(func.count(ApiKey.id))
        .where(ApiKey.user_id == User.id, ApiKey.revoked_at.is_(None))
        .scalar_subquery()
    )
    with read_connection(engine) as conn:
        rows = conn.execute(
            select(User.id, User.name, User.email, User.role, active.label("keys")).order_by(
                User.id
            )
        ).all()
    return [AccountRow(Account(r.id, r.name, r.email, Role(r.role)), r.keys) for r in rows]


def count_admins(engine: Engine) -> int:
    with read_connection(engine) as conn:
        return int(
            conn.execute(select(func.count(User.id)).where(User.role == Role.ADMIN)).scalar_one()
        )
