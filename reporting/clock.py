"""The one clock: every "now" in Besik comes from here, so tests move time instead of waiting."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

_lock = threading.Lock()
_fixed: datetime | None = None
_offset = timedelta(0)


def now() -> datetime:
    """The current time, UTC-aware (moved or frozen in tests)."""
    if _fixed is not None:
        return _fixed
    return datetime.now(UTC) + _offset


def freeze(moment: datetime) -> None:
    """Tests: stop the clock at `moment` (timezone-aware)."""
    global _fixed
    if moment.tzinfo is None:
        raise ValueError("freeze() needs a timezone-aware datetime")
    with _lock:
        _fixed = moment.astimezone(UTC)


def advance(delta: timedelta) -> None:
    """Tests: move the clock forward (a frozen clock stays frozen, later)."""
    global _fixed, _offset
    with _lock:
        if _fixed is not None:
            _fixed += delta
        else:
            _offset += delta


def reset() -> None:
    """Tests: back to real time."""
    global _fixed, _offset
    with _lock:
        _fixed, _offset = None, timedelta(0)
