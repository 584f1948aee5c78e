"""Failed sign-ins and bearer tokens, counted in the database so that every web process and
host shares the count: after LIMIT failures in WINDOW, a key is refused until the oldest
failure leaves the window."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.orm import Session

from .models import FailedAttempt, table_of

LIMIT = 10
WINDOW = timedelta(minutes=15)

_FAILED = table_of(FailedAttempt)
# Built once: a bearer request runs it before its token is looked up.
_IN_WINDOW = (select(func.count(), func.min(_FAILED.c.at))
              .where(_FAILED.c.key == bindparam("key"), _FAILED.c.at > bindparam("since")))
_RECORD = insert(_FAILED)
# The same count as two scalar subqueries on the bind parameters `key` and `since`: a bearer
# request reads them in the statement that looks its token up (tokens.user_and_failures).
FAILURES_IN_WINDOW = select(func.count()).where(
    _FAILED.c.key == bindparam("key"), _FAILED.c.at > bindparam("since")).scalar_subquery()
OLDEST_IN_WINDOW = select(func.min(_FAILED.c.at)).where(
    _FAILED.c.key == bindparam("key"), _FAILED.c.at > bindparam("since")).scalar_subquery()


def account_key(email: str) -> str:
    """The counter of one account (by the address typed, known or not)."""
    return f"account:{email.strip().lower()[:254]}"


def address_key(address: str | None, kind: str = "address") -> str:
    """The counter of one client address (`kind` "token" for bearer tokens)."""
    return f"{kind}:{address or 'unknown'}"


def sign_in_keys(email: str, address: str | None) -> tuple[str, str]:
    """The counters a password attempt is judged on: the account's and the address's."""
    return account_key(email), address_key(address)


def seconds_to_wait(session: Session, keys: Iterable[str], now: datetime) -> int | None:
    """How long until these keys may try again; None when none of them is over the limit."""
    wait = None
    for key in keys:
        count, oldest = session.connection().execute(
            _IN_WINDOW, {"key": key, "since": now - WINDOW}).one()
        seconds = wait_for(count, oldest, now)
        if seconds is not None:
            wait = max(wait or 0, seconds)
    return wait


def wait_for(count: int, oldest: datetime | None, now: datetime) -> int | None:
    """How long a key with `count` failures in the window, the oldest at `oldest`, waits."""
    if count >= LIMIT and oldest is not None:
        return max(1, math.ceil((_aware(oldest) + WINDOW - now).total_seconds()))
    return None


def record_failure(session: Session, keys: Iterable[str], now: datetime) -> None:
    """Count one failure against each key; flushes with the caller's transaction."""
    session.connection().execute(_RECORD, [{"key": key, "at": now} for key in keys])


def forget_old(session: Session, now: datetime) -> int:
    """Delete failures that have left the window (the worker does it every pass)."""
    result = session.execute(delete(FailedAttempt).where(FailedAttempt.at <= now - WINDOW))
    return int(result.rowcount)  # type: ignore[attr-defined]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
