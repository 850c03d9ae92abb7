"""Credits: a per-user balance kept with an append-only ledger, charged at submit and refunded
when a generation ends short, inside the queue's own transactions (so money and work never
disagree). ``POSEGEN_CREDITS_PER_POSE`` = 0 (the default) makes generating free: nothing is
charged and no ledger rows are written.

The queue calls :func:`price`, :func:`insufficient`, :func:`is_overdraft`,
:func:`refund_poses` and :func:`refund_ended` inside its transactions (and
:mod:`posegen.credits.plans` and :mod:`posegen.credits.quota_ledger` for quota plans: the
day's count, its ledger rows, poses given back); the API and CLI use
:mod:`posegen.credits.accounts`.
"""

from __future__ import annotations

from sqlalchemy import Connection

from posegen.config import Settings
from posegen.credits import hourly, plans, pricing, quota_ledger
from posegen.credits.accounts import Entry, Mismatch, balance, check, grant, ledger_page
from posegen.credits.ledger import balance_of, charge_usage, is_overdraft, post
from posegen.credits.refunds import refund_amount, refund_ended, refund_poses
from posegen.credits.task_charges import charge_task, refund_task
from posegen.exceptions import InsufficientCredits

__all__ = [
    "Entry",
    "Mismatch",
    "balance",
    "balance_of",
    "charge_task",
    "charge_usage",
    "check",
    "grant",
    "hourly",
    "insufficient",
    "is_overdraft",
    "ledger_page",
    "plans",
    "post",
    "price",
    "pricing",
    "quota_ledger",
    "refund_amount",
    "refund_ended",
    "refund_poses",
    "refund_task",
]


def price(settings: Settings, total_poses: int) -> int:
    """What a generation of ``total_poses`` poses costs without extras (see
    :mod:`posegen.credits.pricing` for exports and a background change)."""
    return pricing.quote(settings, total_poses).total


def insufficient(conn: Connection, user_id: int, required: int) -> InsufficientCredits:
    """The refusal for a charge the balance cannot cover, with the balance as it is now."""
    balance = balance_of(conn, user_id)
    return InsufficientCredits(
        f"this generation costs {required} credits; the balance is {balance}",
        required=required,
        balance=balance,
    )
