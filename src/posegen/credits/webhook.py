"""The payment provider's webhook: a signed body that credits an account, once per event.

The provider signs the raw request body with the shared secret (HMAC-SHA256, hex) and sends
``Posegen-Signature: sha256=<hex>``. The signature is checked on the bytes as received, before
anything is parsed, in constant time. The body carries ``timestamp`` (Unix seconds, when the
provider signed this delivery): an event further than ``POSEGEN_PAYMENT_WEBHOOK_TOLERANCE_SECONDS``
from our clock is refused (``stale-event``), so a captured request cannot be replayed later
even for an event id we have forgotten. The provider's event id becomes the ledger row's
idempotency key, so a redelivered or replayed event credits nothing more.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from posegen.credits.accounts import grant
from posegen.db.engine import read_connection
from posegen.db.models import CreditKind, User
from posegen.exceptions import InvalidInput, NotFound, Unauthorized

HEADER = "Posegen-Signature"
_PREFIX = "sha256="


@dataclass(frozen=True)
class WebhookOutcome:
    user_id: int
    balance: int
    applied: bool


def sign(secret: str, body: bytes) -> str:
    """The header value for ``body`` (what the provider computes; also for tests)."""
    return _PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> None:
    """Raise :class:`Unauthorized` (kind ``bad-signature``) unless ``header`` signs ``body``."""
    if not header or not hmac.compare_digest(sign(secret, body), header.strip()):
        raise Unauthorized("missing or wrong payment signature", kind="bad-signature")


def apply(
    engine: Engine,
    secret: str,
    body: bytes,
    header: str | None,
    *,
    tolerance_seconds: float = 300,
    now: float | None = None,
) -> WebhookOutcome:
    """Verify, parse and apply one event: ``{"eventId", "timestamp", "email" or "userId",
    "credits", "paymentRef"?}``. Raises :class:`Unauthorized` (``bad-signature``,
    ``stale-event``), :class:`InvalidInput`, :class:`NotFound`."""
    verify(secret, body, header)
    event = _parse(body)
    skew = abs((time.time() if now is None else now) - event["timestamp"])
    if skew > tolerance_seconds:
        raise Unauthorized(
            f"the event was signed {int(skew)} s away from now (tolerance "
            f"{int(tolerance_seconds)} s); the provider must sign each delivery afresh",
            kind="stale-event",
        )
    user_id = _user(engine, event)
    balance, applied = grant(
        engine,
        user_id,
        event["credits"],
        kind=CreditKind.PURCHASE,
        key=f"event:{event['eventId']}",
        reason="payment webhook",
        payment_ref=event.get("paymentRef") or event["eventId"],
    )
    return WebhookOutcome(user_id, balance, applied)


def _parse(body: bytes) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("the event is not JSON") from exc
    if not isinstance(event, dict):
        raise InvalidInput("the event must be a JSON object")
    event_id = event.get("eventId")
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= 120:
        raise InvalidInput("eventId must be a string of 1-120 characters")
    stamp = event.get("timestamp")
    if not isinstance(stamp, int | float) or isinstance(stamp, bool) or not 0 < stamp < 2**40:
        raise InvalidInput("timestamp (Unix seconds when the event was signed) is required")
    amount = event.get("credits")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 1:
        raise InvalidInput("credits must be a positive integer")
    ref = event.get("paymentRef")
    if ref is not None and (not isinstance(ref, str) or len(ref) > 200):
        raise InvalidInput("paymentRef must be a string of at most 200 characters")
    return event


def _user(engine: Engine, event: dict[str, Any]) -> int:
    user_id, email = event.get("userId"), event.get("email")
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        where = User.id == user_id
    elif isinstance(email, str):
        where = User.email == email
    else:
        raise InvalidInput("the event names no account (userId or email)")
    with read_connection(engine) as conn:
        found = conn.execute(select(User.id).where(where)).scalar()
    if found is None:
        raise NotFound("the event's account does not exist")
    return int(found)
