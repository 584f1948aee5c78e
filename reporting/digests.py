"""Daily audit digests: the chain's head at the end of an Almaty day, signed with HMAC-SHA256
under a key kept outside the database, so that a log rewritten and re-hashed, or truncated,
no longer matches a digest published earlier."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from .audit import GENESIS, Verification, verify
from .deadlines import ALMATY, to_local
from .models import AuditEntry

_LINE = re.compile(r"(\d{4}-\d{2}-\d{2}) (\d+) ([0-9a-f]{64}) ([0-9a-f]{64})")


class DigestError(ValueError):
    """A digest line that cannot be read, or a key file that cannot be used."""


def ensure_key(path: Path) -> bool:
    """Create the HMAC key file (mode 600) when absent; True when one was created."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as key_file:
        key_file.write(secrets.token_hex(32))
    return True


def load_key(path: Path) -> bytes:
    """The digest key; DigestError when it is missing (run init-db)."""
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise DigestError(f"no usable audit key at {path}: run 'flask init-db'") from exc


@dataclass(frozen=True)
class Digest:
    """The chain's head at the end of one day, and its signature."""

    day: date
    entries: int
    head: str
    hmac: str

    def line(self) -> str:
        """`<date> <entries> <head-hash> <hmac>`, as `audit-digest` prints it."""
        return f"{self.day.isoformat()} {self.entries} {self.head} {self.hmac}"


def _sign(key: bytes, day: date, entries: int, head: str) -> str:
    message = f"{day.isoformat()} {entries} {head}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def end_of_day(day: date) -> datetime:
    """24:00 of `day` in Almaty."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=ALMATY)


def digest_of(session: Session, key: bytes, day: date) -> Digest:
    """The digest of the chain as it stood at the end of `day` (Almaty)."""
    last = session.execute(select(AuditEntry.seq, AuditEntry.hash)
                           .where(AuditEntry.at < end_of_day(day))
                           .order_by(AuditEntry.seq.desc()).limit(1)).first()
    entries, head = (last.seq, last.hash) if last is not None else (0, GENESIS)
    return Digest(day, entries, head, _sign(key, day, entries, head))


def parse(line: str) -> Digest:
    """A digest line back into its parts; DigestError when it is not one."""
    found = _LINE.fullmatch(line.strip())
    if found is None:
        raise DigestError("not a digest line: expected '<date> <entries> <head> <hmac>'")
    return Digest(date.fromisoformat(found[1]), int(found[2]), found[3], found[4])


def check(session: Session, key: bytes, line: str) -> Verification:
    """The chain verifies, is signed as the line says, and still holds that head at that
    count: a log rewritten and re-hashed, or cut short, fails here even though it is
    consistent in itself."""
    digest = parse(line)
    result = verify(session)
    if not result.is_ok:
        return result
    if not hmac.compare_digest(_sign(key, digest.day, digest.entries, digest.head), digest.hmac):
        return Verification(False, result.entries, result.head, None,
                            "digest signature does not match")
    if digest.entries > result.entries:
        return Verification(False, result.entries, result.head, result.entries + 1,
                            "entries missing at the end")
    held = session.scalar(select(AuditEntry.hash).where(AuditEntry.seq == digest.entries))
    if (held or GENESIS) != digest.head:
        return Verification(False, result.entries, result.head, digest.entries,
                            "entry does not match the digest")
    return result


def record_daily(session: Session, key: bytes, log_path: Path, now: datetime) -> list[Digest]:
    """Append to the append-only log file the digest of every finished day not yet in it
    (the worker calls this each pass); several workers take turns through a file lock."""
    yesterday = to_local(now).date() - timedelta(days=1)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    written: list[Digest] = []
    with log_path.open("a+", encoding="utf-8") as log:
        fcntl.flock(log.fileno(), fcntl.LOCK_EX)
        log.seek(0)
        lines = [line for line in log.read().splitlines() if line.strip()]
        last_day = parse(lines[-1]).day if lines else None
        day = yesterday if last_day is None else last_day + timedelta(days=1)
        while day <= yesterday:
            digest = digest_of(session, key, day)
            log.write(digest.line() + "\n")
            written.append(digest)
            day += timedelta(days=1)
        log.flush()
        os.fsync(log.fileno())
    return written
