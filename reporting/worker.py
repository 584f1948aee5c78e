"""The worker: escalates what is due and delivers queued push messages.

Work is claimed in short transactions (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: BEGIN
IMMEDIATE) and held under a lease, so several workers never send the same message twice and
a killed worker's claims are picked up again once its lease runs out.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from . import alerts, clock, coverage, digests, exports, logs, messages, push, throttle
from .acknowledgements import issue_ack_token
from .config import Settings
from .db import Database
from .deadlines import to_local
from .errors import DATABASE_DOWN
from .models import PushAttempt, PushDelivery, PushSubscription, Role, User
from .vocabulary import DeliveryStatus
from .wakeup import Listener

log = logging.getLogger("besik.worker")

LEASE = timedelta(seconds=60)
BATCH = 20
MAX_ATTEMPTS = 12
BACKOFF_CAP = timedelta(minutes=5)
# How often the export's lines are brought up to date: each pass looks at every report
# (1,000,000 reports: ~8 s of CPU per language with nothing to render). An export renders
# whatever has no true line yet itself, so this trades only its speed.
RENDER_EVERY = timedelta(hours=1)
# A push service's Retry-After is honoured up to this; longer is taken as a misconfiguration
# (an officer's alert is not held for a day).
RETRY_AFTER_CAP = timedelta(hours=1)
# How long a sent push's result is kept while the database is down, to be recorded once it
# is back (after that the lease runs out and the message may be sent again).
RECORD_PATIENCE_SECONDS = LEASE.total_seconds() / 2
# Passes woken by commits start at least this far apart: the commits of that time share one
# pass. At 100 filings a second a pass per commit cost a quarter of what filing itself cost,
# on the same cores; this adds at most 50 ms to an alert (the goal is 200 ms).
GATHER_SECONDS = 0.05
# A pass woken by a commit looks for what falls due by the clock (escalations, reminders,
# coverage gaps, expired sign-in failures) only if it was last looked for this long ago: a
# commit queues deliveries, it makes nothing fall due. At 20 filings a second, looking on
# every pass read the unacknowledged notices and the examinations due 20 times a second (on
# PostgreSQL two-thirds of the worker's database time, and growing with the history).
CLOCK_WORK_SECONDS = 1.0


@dataclass
class PassResult:
    escalated: int = 0
    reminded: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    gone: int = 0
    gaps_alerted: int = 0


class Worker:
    """One worker process (or thread); `name` identifies its leases."""

    def __init__(self, db: Database, settings: Settings, name: str | None = None) -> None:
        self.db, self.settings = db, settings
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._digested_through: date | None = None
        self._coverage_checked_at: datetime | None = None

    def run_once(self, now: datetime | None = None, *, by_the_clock: bool = True
                 ) -> PassResult:
        """Escalate, remind, deliver everything that is due, then checkpoint SQLite's WAL;
        without `by_the_clock`, deliver only (a pass woken by a commit, see run_forever).

        `now` fixes the pass's time (tests); by default each step reads the clock."""
        started = time.monotonic()
        result = PassResult()
        if by_the_clock:
            self.work_by_the_clock(now, result)
        while True:
            claimed = self.claim(now or clock.now())
            for delivery_id in claimed:
                self._deliver(delivery_id, result, now)
            if len(claimed) < BATCH:
                break
        self.db.checkpoint()  # keeps WAL checkpoints (and their fsync) off requests
        self.record_digests(now or clock.now())
        if any(vars(result).values()):  # a pass with nothing to do writes no line
            logs.event(log, "worker:pass",
                       duration_ms=round((time.monotonic() - started) * 1000, 1),
                       worker=self.name, **vars(result))
        return result

    def work_by_the_clock(self, now: datetime | None, result: PassResult) -> None:
        """What falls due as time passes: escalations, examination reminders, coverage gaps;
        sign-in failures old enough to forget."""
        with self.db.writing() as session:
            result.escalated = alerts.escalate_due(session, now or clock.now())
            result.reminded = alerts.remind_examination(session, now or clock.now())
            throttle.forget_old(session, now or clock.now())
        self.check_coverage(now or clock.now(), result)

    def check_coverage(self, now: datetime, result: PassResult) -> None:
        """Every CHECK_EVERY: open and close coverage gaps; alert each new one once."""
        last = self._coverage_checked_at
        if last is not None and now - last < coverage.CHECK_EVERY:
            return
        with self.db.writing() as session:
            opened, _closed = coverage.refresh(session, now)
            result.gaps_alerted = alerts.alert_coverage_gaps(session, opened, now)
        self._coverage_checked_at = now

    def record_digests(self, now: datetime) -> None:
        """Once a day: the finished days' audit digests to the append-only file and the log."""
        yesterday = to_local(now).date() - timedelta(days=1)
        if self._digested_through is not None and self._digested_through >= yesterday:
            return
        try:
            key = digests.load_key(self.settings.audit_key_file)
        except digests.DigestError:
            log.warning("no audit digest key at %s: run 'flask init-db'",
                        self.settings.audit_key_file)
            self._digested_through = yesterday  # say it once a day, not every pass
            return
        with self.db.reading() as session:
            written = digests.record_daily(session, key, self.settings.audit_digest_log, now)
        for digest in written:
            log.info("audit digest %s", digest.line())
        self._digested_through = yesterday

    def render_export_lines(self, now: datetime) -> exports.Sweep:
        """One pass rendering the CSV export's lines ahead (in an app context)."""
        sweep = exports.render_ahead(self.db, now)
        if sweep.rendered:
            log.info("rendered %d export lines ahead (%d reports looked at)", sweep.rendered,
                     sweep.reports)
        return sweep

    def _render_forever(self, app: Flask) -> None:
        # Its own thread: a long first pass over a large database must not delay an alert.
        with app.app_context():
            while True:
                try:
                    self.render_export_lines(clock.now())
                except Exception:
                    log.exception("rendering export lines failed")
                time.sleep(RENDER_EVERY.total_seconds())

    def run_forever(self, poll_seconds: float) -> None:
        """Pass whenever a transaction that queued work commits, and at least every
        `poll_seconds` (what falls due by the clock: escalations, retries; a missed wake-up)."""
        wakeup = self.db.listen()  # before the first pass: nothing committed meanwhile is lost
        log.info("worker %s started, woken by commits, polling every %ss", self.name,
                 poll_seconds)
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        threading.Thread(target=self._render_forever, args=(app,), name="export-lines",
                         daemon=True).start()
        clock_worked_at, woken = -math.inf, False
        while True:
            started = time.monotonic()
            by_the_clock = not woken or clock_work_due(clock_worked_at, started)
            try:
                self.run_once(by_the_clock=by_the_clock)
                if by_the_clock:
                    clock_worked_at = started
            except DATABASE_DOWN as exc:  # the next pass tries again: no traceback each time
                log.warning("worker pass failed: database unavailable (%s)", type(exc).__name__)
            except Exception:  # keep alerting: one bad pass must not stop the worker
                log.exception("worker pass failed")
            woken = wakeup.wait(max(0.0, poll_seconds - (time.monotonic() - started)))
            if woken:
                gather(wakeup, started)

    def claim(self, now: datetime) -> list[int]:
        """Lease up to BATCH due deliveries to this worker.

        Its own leases are taken up again too: a pass that failed halfway (the database went
        away) left them, and between passes this worker holds nothing in flight."""
        with self.db.writing() as session:
            ids = list(session.scalars(
                select(PushDelivery.id)
                .where(PushDelivery.status == DeliveryStatus.PENDING,
                       PushDelivery.next_attempt_at <= now,
                       or_(PushDelivery.lease_until.is_(None), PushDelivery.lease_until < now,
                           PushDelivery.lease_owner == self.name))
                .order_by(PushDelivery.next_attempt_at, PushDelivery.id)
                .limit(BATCH).with_for_update(skip_locked=True)))
            if ids:
                session.execute(update(PushDelivery).where(PushDelivery.id.in_(ids)).values(
                    lease_owner=self.name, lease_until=now + LEASE))
        return ids

    def _deliver(self, delivery_id: int, result: PassResult, now: datetime | None) -> None:
        prepared = self._prepare(delivery_id, now or clock.now())
        if prepared is None:
            return
        subscription, message = prepared
        if not push.is_allowed(subscription.endpoint, self.settings.push_allowed_hosts):
            outcome = push.SendResult(None, error="endpoint host not allowed")
            self._record(delivery_id, subscription.id, outcome, result, now or clock.now(),
                         give_up=True)
            return
        outcome = push.send(subscription.endpoint, subscription.p256dh, subscription.auth,
                            message, vapid_key_path=str(self.settings.vapid_private_key_file),
                            subject=self.settings.vapid_subject,
                            topic=_topic(message))
        self._record_through_outage(delivery_id, subscription.id, outcome, result,
                                    now or clock.now())

    def _record_through_outage(self, delivery_id: int, subscription_id: int,
                               outcome: push.SendResult, result: PassResult,
                               now: datetime) -> None:
        """Record a send's outcome, waiting out a short database outage: the push has gone
        out, and a delivery left unrecorded would be sent again once its lease ran out."""
        waited, pause = 0.0, 0.25
        while True:
            try:
                self._record(delivery_id, subscription_id, outcome, result, now)
                return
            except DATABASE_DOWN:
                if waited >= RECORD_PATIENCE_SECONDS:
                    raise
                log.warning("database unavailable: holding a push result to record it")
                time.sleep(pause)
                waited, pause = waited + pause, min(pause * 2, 4.0)

    def _prepare(self, delivery_id: int, now: datetime
                 ) -> tuple[PushSubscription, dict[str, Any]] | None:
        # The ack token is minted at send time: it exists in clear only inside the message.
        with self.db.writing() as session:
            delivery = session.get(PushDelivery, delivery_id)
            if delivery is None or delivery.lease_owner != self.name:
                return None
            subscription = delivery.subscription
            if subscription is None:
                delivery.status, delivery.lease_until = DeliveryStatus.GONE.value, None
                return None
            held_until = _backing_off_until(session, subscription, delivery_id, now)
            if held_until is not None:
                # The push service refused this device a moment ago (5xx, 429, no answer):
                # its other messages wait with it instead of knocking again one by one.
                delivery.next_attempt_at = held_until
                delivery.lease_owner, delivery.lease_until = None, None
                return None
            user = session.get(User, delivery.user_id)
            notice = delivery.notice
            is_member = (notice is not None and user is not None and user.is_active
                         and user.role is Role.OFFICER and user.agency_id == notice.agency_id)
            token = None
            # Only an officer of the notice's own agency may acknowledge for it: an admin's
            # escalation says whom to call instead.
            if notice is not None and is_member and notice.acknowledged_at is None:
                token = issue_ack_token(session, notice.id, delivery.user_id, now)
            message = messages.payload(delivery, token, user.locale if user else None,
                                       is_agency_member=is_member)
            session.expunge(subscription)
        return subscription, message

    def _record(self, delivery_id: int, subscription_id: int, outcome: push.SendResult,
                result: PassResult, now: datetime, *, give_up: bool = False) -> None:
        with self.db.writing() as session:
            delivery = session.get(PushDelivery, delivery_id)
            if delivery is None:
                return
            session.add(PushAttempt(delivery_id=delivery_id, at=now, worker=self.name,
                                    status_code=outcome.status_code, error=outcome.error))
            delivery.attempts += 1
            delivery.last_status, delivery.last_error = outcome.status_code, outcome.error
            delivery.lease_owner, delivery.lease_until = None, None
            subscription = session.get(PushSubscription, subscription_id)
            if outcome.is_delivered:
                delivery.status, delivery.sent_at = DeliveryStatus.SENT.value, now
                if subscription is not None:
                    subscription.last_success_at = now
                result.sent += 1
                return
            if subscription is not None:
                subscription.last_failure_at = now
            if outcome.is_gone:
                # The browser unsubscribed: forget the device, and what was queued for it.
                session.execute(update(PushDelivery).where(
                    PushDelivery.subscription_id == subscription_id,
                    PushDelivery.status == DeliveryStatus.PENDING)
                    .values(status=DeliveryStatus.GONE.value))
                delivery.status = DeliveryStatus.GONE.value
                if subscription is not None:
                    session.delete(subscription)
                result.gone += 1
            elif outcome.is_retryable and not give_up and delivery.attempts < MAX_ATTEMPTS:
                delivery.next_attempt_at = now + _retry_delay(delivery.attempts,
                                                              outcome.retry_after)
                result.retried += 1
            else:
                delivery.status = DeliveryStatus.FAILED.value
                result.failed += 1


def clock_work_due(last: float, now: float) -> bool:
    """Whether a pass woken by a commit at `now` (monotonic) looks for what falls due by
    the clock, last looked for at `last` (a pass after a full poll's wait always does)."""
    return now - last >= CLOCK_WORK_SECONDS


def gather(wakeup: Listener, last_pass_started: float) -> None:
    """Woken soon after the last pass started: wait out the rest of GATHER_SECONDS, then take
    every wake-up of that time for the one pass that follows."""
    rest = GATHER_SECONDS - (time.monotonic() - last_pass_started)
    if rest > 0:
        time.sleep(rest)
        wakeup.wait(0)


def _retry_delay(attempts: int, retry_after: int | None) -> timedelta:
    """Exponential backoff from 1 s up to BACKOFF_CAP; a push service's Retry-After (up to
    RETRY_AFTER_CAP) lengthens it, never shortens it (`Retry-After: 0` is no hot loop)."""
    backoff = min(timedelta(seconds=2 ** (attempts - 1)), BACKOFF_CAP)
    if retry_after is None:
        return backoff
    return max(backoff, min(timedelta(seconds=retry_after), RETRY_AFTER_CAP))


def _backing_off_until(session: Session, subscription: PushSubscription, delivery_id: int,
                       now: datetime) -> datetime | None:
    """When the device's backoff ends, if another of its messages failed and waits to be
    retried later than `now`; else None (the device is served at once)."""
    last_failure = subscription.last_failure_at
    if last_failure is None or (subscription.last_success_at is not None
                                and subscription.last_success_at >= last_failure):
        return None  # its last push went through: no query on the common path
    held_until: datetime | None = session.scalar(
        select(func.max(PushDelivery.next_attempt_at))
        .where(PushDelivery.subscription_id == subscription.id,
               PushDelivery.status == DeliveryStatus.PENDING,
               PushDelivery.attempts > 0, PushDelivery.id != delivery_id,
               PushDelivery.next_attempt_at > now))
    return held_until


def _topic(message: dict[str, Any]) -> str:
    # A newer message with the same topic replaces an undelivered older one: one per notice,
    # one per coverage gap.
    key = message["notice_id"] or (f"gap{message['gap_id']}" if message.get("gap_id")
                                   else "test")
    return str(key).replace("-", "")[:32]
