"""Browser sessions: sign in once with an API key, then a signed cookie that the server re-checks.

The cookie holds the user id, the id of the API key used to sign in, and a random nonce; it is
signed (itsdangerous, HMAC-SHA1 over a key derived from the secret) and timestamped. The key itself
is never stored in the cookie nor given to page script. Signing in stores a ``web_sessions`` row
holding the SHA-256 of the nonce; every request re-reads that row with the key row, so signing
out (which deletes the row) ends that session everywhere, even for a copy of the cookie, and
revoking the key (``posegen users revoke-key``) ends every session signed in with it.

CSRF: each session has its own nonce; forms carry a token signed over it, and a POST whose token
does not match the cookie's nonce is refused. The sign-in form gets an anonymous session (nonce
only) so a third-party page cannot sign a browser into someone else's account either.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeSerializer, URLSafeTimedSerializer
from sqlalchemy import Engine, delete, insert, select
from starlette.requests import Request
from starlette.responses import Response

from posegen import accounts, observe
from posegen.accounts import Account
from posegen.config import Settings
from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import ApiKey, Role, User
from posegen.db.models import WebSession as WebSessionRow
from posegen.db.types import utcnow
from posegen.exceptions import ConfigError, Forbidden, Unauthorized

COOKIE_NAME = "posegen_session"
COOKIE_PATH = "/ui"
#: A signed-in browser has to sign in again after this long, whatever it does.
MAX_AGE_SECONDS = 8 * 3600
CSRF_FIELD = "csrf_token"
SECRET_FILE = "session-secret"


def _token_hash(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


def load_secret(settings: Settings) -> str:
    """``POSEGEN_SESSION_SECRET``, else a random secret kept in the data dir (created once).

    Several API processes sharing one data dir share the file; hosts that do not share a data
    dir must set ``POSEGEN_SESSION_SECRET`` to the same value.
    """
    if settings.session_secret is not None and settings.session_secret.get_secret_value():
        return settings.session_secret.get_secret_value()
    path = settings.data_dir / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting together must not each write their own secret.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32))
        handle.flush()
        os.fsync(handle.fileno())
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    for _ in range(50):
        value = path.read_text().strip()
        if value:  # the creator may not have written it yet
            return value
        time.sleep(0.02)
    raise ConfigError(f"session secret file {path} is empty: delete it to make a new one")


@dataclass(frozen=True)
class WebSession:
    """What one request's cookie says, after the server checked it."""

    nonce: str
    account: Account | None = None
    key_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.account is not None and self.account.role is Role.ADMIN


class SessionManager:
    """Signs, reads and checks session cookies and CSRF tokens."""

    def __init__(self, secret: str, engine: Engine) -> None:
        observe.add_secret(secret)  # whatever logs it, the secret never reaches a log line
        self._engine = engine
        self._cookies = URLSafeTimedSerializer(secret, salt="posegen.web.session")
        self._csrf = URLSafeSerializer(secret, salt="posegen.web.csrf")

    # --- reading ------------------------------------------------------------------------
    def read(self, request: Request) -> WebSession | None:
        """The request's session, or None when there is none or it is forged, stale or revoked."""
        raw = request.cookies.get(COOKIE_NAME)
        if not raw:
            return None
        try:
            data = self._cookies.loads(raw, max_age=MAX_AGE_SECONDS)
        except BadSignature:  # also covers SignatureExpired
            return None
        if not isinstance(data, dict) or not isinstance(data.get("n"), str):
            return None
        user_id, key_id = data.get("u"), data.get("k")
        if user_id is None:
            return WebSession(nonce=data["n"])
        if not isinstance(user_id, int) or not isinstance(key_id, int):
            return None
        account = self._account_for_session(user_id, key_id, data["n"])
        if account is None:
            return None
        return WebSession(nonce=data["n"], account=account, key_id=key_id)

    def _account_for_session(self, user_id: int, key_id: int, nonce: str) -> Account | None:
        # One query: the session row (not signed out, not expired), its key (not revoked), user.
        with read_connection(self._engine) as conn:
            row = conn.execute(
                select(User.id, User.name, User.email, User.role)
                .join(ApiKey, ApiKey.user_id == User.id)
                .join(WebSessionRow, WebSessionRow.api_key_id == ApiKey.id)
                .where(
                    WebSessionRow.token_hash == _token_hash(nonce),
                    WebSessionRow.user_id == user_id,
                    WebSessionRow.expires_at > utcnow(),
                    ApiKey.id == key_id,
                    User.id == user_id,
                    ApiKey.revoked_at.is_(None),
                )
            ).first()
        return None if row is None else Account(row.id, row.name, row.email, Role(row.role))

    # --- writing ------------------------------------------------------------------------
    def start_anonymous(self, response: Response, request: Request) -> WebSession:
        """A nonce-only session for the sign-in form's CSRF token."""
        session = WebSession(nonce=secrets.token_urlsafe(16))
        self._set_cookie(response, request, {"n": session.nonce})
        return session

    def sign_in(self, response: Response, request: Request, api_key: str) -> WebSession:
        """Check ``api_key`` and start a fresh session (new nonce: no session fixation)."""
        api_key = api_key.strip()
        account = accounts.authenticate(self._engine, api_key)
        if account is None:
            raise Unauthorized("that API key is not valid (unknown or revoked)")
        with read_connection(self._engine) as conn:
            key_id = conn.execute(
                select(ApiKey.id).where(ApiKey.key_hash == accounts.hash_key(api_key))
            ).scalar_one()
        accounts.touch_key(self._engine, api_key)  # operators see when a key was last used
        session = WebSession(nonce=secrets.token_urlsafe(32), account=account, key_id=key_id)
        now = utcnow()
        with write_transaction(self._engine) as conn:
            # The user's expired sessions go here, so the table holds only live ones and a few.
            conn.execute(
                delete(WebSessionRow).where(
                    WebSessionRow.user_id == account.id, WebSessionRow.expires_at <= now
                )
            )
            conn.execute(
                insert(WebSessionRow).values(
                    user_id=account.id,
                    api_key_id=key_id,
                    token_hash=_token_hash(session.nonce),
                    created_at=now,
                    expires_at=now + dt.timedelta(seconds=MAX_AGE_SECONDS),
                )
            )
        self._set_cookie(response, request, {"u": account.id, "k": key_id, "n": session.nonce})
        return session

    def sign_out(self, response: Response, session: WebSession | None) -> None:
        """End ``session`` on the server (a copy of its cookie stops working) and drop the
        cookie; the key stays valid (revoke it to end every session signed in with it)."""
        if session is not None and session.account is not None:
            with write_transaction(self._engine) as conn:
                conn.execute(
                    delete(WebSessionRow).where(
                        WebSessionRow.token_hash == _token_hash(session.nonce)
                    )
                )
        response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH)

    def _set_cookie(self, response: Response, request: Request, data: dict[str, object]) -> None:
        response.set_cookie(
            COOKIE_NAME,
            self._cookies.dumps(data),
            max_age=MAX_AGE_SECONDS,
            path=COOKIE_PATH,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )

    # --- CSRF ---------------------------------------------------------------------------
    def csrf_token(self, session: WebSession) -> str:
        """The token forms of this session must send back."""
        token = self._csrf.dumps(session.nonce)
        assert isinstance(token, str)
        return token

    def check_csrf(self, session: WebSession | None, token: str | None) -> None:
        """Raise :class:`Forbidden` unless ``token`` was made for this session."""
        if session is None or not token:
            raise Forbidden("missing form token: reload the page and try again", kind="csrf")
        try:
            nonce = self._csrf.loads(token)
        except BadSignature as exc:
            raise Forbidden("bad form token: reload the page and try again", kind="csrf") from exc
        if not isinstance(nonce, str) or not hmac.compare_digest(nonce, session.nonce):
            raise Forbidden("stale form token: reload the page and try again", kind="csrf")
