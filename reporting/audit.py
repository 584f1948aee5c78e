"""The audit log: record() appends to a sha256 hash chain; verify() walks it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from . import clock
from .db import insert_rows
from .deadlines import start_of_local_day
from .models import AuditEntry, AuditHead, User, table_of

GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


def entry_hash(prev_hash: str, body: dict[str, Any]) -> str:
    """The chain link: sha256 over the previous hash and the entry's canonical JSON."""
    return hashlib.sha256((prev_hash + canonical_json(body)).encode()).hexdigest()


def _body(seq: int, at: datetime, actor_id: int | None, tag: str, subject: str | None,
          data: dict[str, Any]) -> dict[str, Any]:
    return {"seq": seq, "at": at.isoformat(), "actor_id": actor_id, "tag": tag,
            "subject": subject, "data": data}


# Locking the head row serialises appenders until commit: the chain cannot fork.
_HEAD = table_of(AuditHead)
_LOCK_HEAD = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1).with_for_update()
_APPEND = insert(table_of(AuditEntry))
# Entries per INSERT: far below SQLite's limit of bound parameters (32,766; eight a row).
APPEND_ROWS_PER_STATEMENT = 500
_MOVE_HEAD = (update(_HEAD).where(_HEAD.c.id == 1)
              .values(seq=bindparam("new_seq"), hash=bindparam("new_hash")))
_APPEND_MOVING_HEAD = _APPEND.add_cte(_MOVE_HEAD.cte("moved_head"))


def changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{field: {"from", "to"}} for each field whose value differs: an entry's before/after."""
    return {k: {"from": before.get(k), "to": v} for k, v in after.items()
            if before.get(k) != v}


@dataclass(frozen=True)
class Entry:
    """One state change to append: a tag such as "report:filed", who, about what."""

    tag: str
    actor_id: int | None
    subject: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def record(session: Session, tag: str, *, actor_id: int | None, subject: str | None = None,
           data: dict[str, Any] | None = None, now: datetime | None = None) -> AuditEntry:
    """Append one tagged entry; flushes, never commits."""
    return record_all(session, [Entry(tag, actor_id, subject, data or {})], now=now)[-1]


def record_all(session: Session, entries: list[Entry], *,
               now: datetime | None = None) -> list[AuditEntry]:
    """Append entries in order under one lock of the chain's head; flushes, never commits."""
    return [AuditEntry(**row) for row in _append(session, entries, now)]


def append_all(session: Session, entries: list[Entry], *, now: datetime | None = None) -> None:
    """record_all for a caller that needs no entry back (filing: no ORM object built inside
    the write lock)."""
    _append(session, entries, now)


def _append(session: Session, entries: list[Entry], now: datetime | None
            ) -> list[dict[str, Any]]:
    session.flush()  # pending changes first: the entries describe them
    if not entries:  # (a list whose views a twin request recorded first)
        return []
    at = (now or clock.now()).astimezone(UTC)
    # Before the lock, all that does not depend on the head: every appender waits for it.
    payloads = [json.loads(canonical_json(entry.data)) for entry in entries]
    connection = session.connection()
    seq, prev = connection.execute(_LOCK_HEAD).one()
    rows = []
    for entry, payload in zip(entries, payloads, strict=True):
        seq += 1
        digest = entry_hash(prev, _body(seq, at, entry.actor_id, entry.tag, entry.subject,
                                        payload))
        rows.append({"seq": seq, "at": at, "actor_id": entry.actor_id, "tag": entry.tag,
                     "subject": entry.subject, "data": payload, "prev_hash": prev,
                     "hash": digest})
        prev = digest
    _write(connection, rows, {"new_seq": seq, "new_hash": prev})
    return rows


def _write(connection: Connection, rows: list[dict[str, Any]], head: dict[str, Any]) -> None:
    """Insert the entries and move the head: plain Core statements (appending runs inside
    the write lock), several entries as one INSERT (db.insert_rows) of up to
    APPEND_ROWS_PER_STATEMENT. On PostgreSQL the head moves within the last INSERT (a
    data-modifying WITH): one round trip less while the head is locked, when a web process
    that holds it and waits for a core holds up every other appender."""
    chunks = [rows[start:start + APPEND_ROWS_PER_STATEMENT]
              for start in range(0, len(rows), APPEND_ROWS_PER_STATEMENT)]
    for chunk in chunks[:-1]:
        insert_rows(connection, _APPEND, chunk)
    if connection.dialect.name == "postgresql":
        insert_rows(connection, _APPEND_MOVING_HEAD, chunks[-1], head)
    else:
        insert_rows(connection, _APPEND, chunks[-1])
        connection.execute(_MOVE_HEAD, head)


@dataclass(frozen=True)
class Verification:
    is_ok: bool
    entries: int
    head: str
    bad_seq: int | None = None
    reason: str | None = None


def verify(session: Session, batch: int = 5000) -> Verification:
    """Recompute every link up to the head as it was when the walk began (entries appended
    meanwhile are left for the next walk); report the first entry that does not match."""
    head = session.get(AuditHead, 1)
    end = head.seq if head is not None else None
    prev, count, last_seq = GENESIS, 0, 0
    while True:
        query = select(AuditEntry).where(AuditEntry.seq > last_seq)
        if end is not None:
            query = query.where(AuditEntry.seq <= end)
        rows = session.scalars(query.order_by(AuditEntry.seq).limit(batch)).all()
        if not rows:
            break
        for entry in rows:
            if entry.seq != last_seq + 1:
                return Verification(False, count, prev, entry.seq, "gap in sequence")
            if entry.prev_hash != prev:
                return Verification(False, count, prev, entry.seq, "broken link")
            body = _body(entry.seq, entry.at, entry.actor_id, entry.tag, entry.subject,
                         entry.data)
            if entry_hash(prev, body) != entry.hash:
                return Verification(False, count, prev, entry.seq, "content changed")
            prev, count, last_seq = entry.hash, count + 1, entry.seq
    if head is not None and (head.seq != last_seq or head.hash != prev):
        return Verification(False, count, prev, last_seq + 1, "entries missing at the end")
    return Verification(True, count, prev)


def page(session: Session, *, first_day: date | None, last_day: date | None,
         event: str | None, before_seq: int | None, limit: int,
         scope: ColumnElement[bool] | None = None) -> tuple[list[AuditEntry], int | None]:
    """Entries newest first, within Almaty days and an event (a tag or its prefix) and a
    reader's scope (access.visible_audit), and the cursor of the next page."""
    query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit + 1)
    if scope is not None:
        query = query.where(scope)
    if first_day is not None:
        query = query.where(AuditEntry.at >= start_of_local_day(first_day))
    if last_day is not None:
        query = query.where(AuditEntry.at < start_of_local_day(last_day + timedelta(days=1)))
    if event:
        query = query.where(AuditEntry.tag == event if ":" in event
                            else AuditEntry.tag.startswith(f"{event}:"))
    if before_seq is not None:
        query = query.where(AuditEntry.seq < before_seq)
    rows = list(session.scalars(query))
    entries = rows[:limit]
    return entries, entries[-1].seq if len(rows) > limit else None


def actor_names(session: Session, entries: list[AuditEntry]) -> dict[int, str]:
    """The names of the people who acted in these entries."""
    ids = {e.actor_id for e in entries if e.actor_id is not None}
    if not ids:
        return {}
    return {row.id: row.name for row in session.execute(
        select(User.id, User.name).where(User.id.in_(ids)))}
