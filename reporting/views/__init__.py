"""One blueprint per audience; views authorise, validate, call one operation, respond."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from ..db import get_session
from ..models import User
from ..reports import Filed, file_report


def file_and_commit(reporter: User, cleaned: dict[str, Any], now: datetime) -> Filed:
    """The request boundary for filing: one transaction, retried once on an id race."""
    session = get_session()
    try:
        filed = file_report(session, reporter, cleaned, now=now)
        session.commit()
    except IntegrityError:
        # The same id arrived twice at once (a phone's sync and online replays racing):
        # the loser starts over and finds the winner's report.
        session.rollback()
        filed = file_report(session, reporter, cleaned, now=now)
        session.commit()
    return filed
