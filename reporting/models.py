"""Typed models. Times are stored in UTC; enums are stored by value."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from . import clock
from .vocabulary import AgencyKind as AgencyKind
from .vocabulary import Role as Role


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on both SQLite (which has no time zones) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: Besik stores UTC only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, values_callable=lambda e: [m.value for m in e], native_enum=False,
                length=32, validate_strings=True)


def new_uuid() -> str:
    """A random UUID as text (the same form the phones send)."""
    return str(uuid.uuid4())


intpk = Annotated[int, mapped_column(Integer, primary_key=True)]
uuidpk = Annotated[str, mapped_column(String(36), primary_key=True, default=new_uuid)]
code = Annotated[str, mapped_column(String(32), unique=True, index=True)]
utc = Annotated[datetime, mapped_column(UTCDateTime())]
utc_opt = Annotated[datetime | None, mapped_column(UTCDateTime(), nullable=True)]
text_opt = Annotated[str | None, mapped_column(Text, nullable=True)]


class Base(DeclarativeBase):
    type_annotation_map: dict[Any, Any] = {str: String(255), dict[str, Any]: JSON,
                                           list[str]: JSON}


def table_of(model: type[Base]) -> Table:
    """A model's table, for the Core statements of hot paths (no ORM overhead)."""
    return Base.metadata.tables[model.__tablename__]


class ReportState(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"


class Region(Base):
    __tablename__ = "regions"
    id: Mapped[intpk]
    code: Mapped[code]
    name: Mapped[str]  # English
    name_kk: Mapped[str | None] = mapped_column(String(200))
    name_ru: Mapped[str | None] = mapped_column(String(200))
    districts: Mapped[list[District]] = relationship(back_populates="region")


class District(Base):
    __tablename__ = "districts"
    id: Mapped[intpk]
    code: Mapped[code]
    name: Mapped[str]
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"), index=True)
    # Places are never deleted (reports and the audit log name them): deactivated instead.
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    region: Mapped[Region] = relationship(back_populates="districts")


class Facility(Base):
    __tablename__ = "facilities"
    id: Mapped[intpk]
    code: Mapped[code]
    name: Mapped[str]
    kind: Mapped[str] = mapped_column(String(32), default="maternity")
    district_id: Mapped[int] = mapped_column(ForeignKey("districts.id"), index=True)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    district: Mapped[District] = relationship()


class Agency(Base):
    """A guardianship or police body; jurisdiction is one district, or a whole region."""

    __tablename__ = "agencies"
    id: Mapped[intpk]
    code: Mapped[code]
    name: Mapped[str]
    kind: Mapped[AgencyKind] = mapped_column(_enum(AgencyKind))
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"), index=True)
    district_id: Mapped[int | None] = mapped_column(ForeignKey("districts.id"), index=True)
    phone: Mapped[str | None] = mapped_column(String(32))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    region: Mapped[Region] = relationship()
    district: Mapped[District | None] = relationship()


class User(Base):
    __tablename__ = "users"
    id: Mapped[intpk]
    email: Mapped[str] = mapped_column(String(254), unique=True, index=True)
    name: Mapped[str]
    password_hash: Mapped[str]
    role: Mapped[Role] = mapped_column(_enum(Role))
    facility_id: Mapped[int | None] = mapped_column(ForeignKey("facilities.id"), index=True)
    agency_id: Mapped[int | None] = mapped_column(ForeignKey("agencies.id"), index=True)
    # An admin's scope: one region, or None for the whole country.
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id"), index=True)
    is_head: Mapped[bool] = mapped_column(Boolean, default=False)
    locale: Mapped[str | None] = mapped_column(String(8))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Bumped at sign-out, password change and deactivation: every older session ends.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A password an admin set (a new account, a reset) must be replaced at the next sign-in.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False,
                                                       server_default=false())
    created_at: Mapped[utc] = mapped_column(default=clock.now)
    facility: Mapped[Facility | None] = relationship()
    agency: Mapped[Agency | None] = relationship()
    region: Mapped[Region | None] = relationship()

    # flask-login protocol
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return str(self.id)


class ApiToken(Base):
    """A bearer token; only its sha256 is stored, the token itself is shown once."""

    __tablename__ = "api_tokens"
    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[utc] = mapped_column(default=clock.now)
    revoked_at: Mapped[utc_opt]
    user: Mapped[User] = relationship()


class PolicyVersion(Base):
    """The whole deadline policy as data; every change adds a version, none is edited."""

    __tablename__ = "policy_versions"
    id: Mapped[intpk]
    created_at: Mapped[utc] = mapped_column(default=clock.now)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    rules: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    note: Mapped[str | None] = mapped_column(String(255))


class CalendarOverride(Base):
    """A government day-off transfer the holidays library does not know yet."""

    __tablename__ = "calendar_overrides"
    day: Mapped[date] = mapped_column(primary_key=True)
    is_working_day: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str | None] = mapped_column(String(255))


class ReferenceCounter(Base):
    """The last reference number handed out per region and year (incremented atomically)."""

    __tablename__ = "reference_counters"
    region_code: Mapped[str] = mapped_column(String(32), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_value: Mapped[int] = mapped_column(BigInteger, default=0)


_OUTCOME = ("discovered_at", "reported_at", "guardianship_due_at",
            "guardianship_statutory_due_at", "guardianship_reported_at")


class Report(Base):
    __tablename__ = "reports"
    # The phone's UUID is the primary key: it is also the idempotency key of the API.
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    # Indexed with received_at (below): a region's reports of a period, one range each.
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"))
    # The district the report was routed by: a facility moved later keeps its old reports
    # where they were (NULL only in rows filed before the column existed and not backfilled).
    district_id: Mapped[int | None] = mapped_column(ForeignKey("districts.id"))
    reporter_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    policy_version_id: Mapped[int] = mapped_column(ForeignKey("policy_versions.id"))
    circumstance: Mapped[str] = mapped_column(String(32))
    discovered_at: Mapped[utc]
    filed_at: Mapped[utc]
    received_at: Mapped[utc]
    # The instant the reporting deadline is judged on (filed_at or received_at, PRODUCT §3).
    reported_at: Mapped[utc]
    # The reporting outcome, settled at filing and copied from the two reporting deadlines
    # (start_report_deadlines): when report_to_guardianship and its statutory bound fall due
    # (None: not in the policy then), and when a guardianship agency was told (both met
    # then; None: none was). The compliance figures read a period's reports alone.
    guardianship_due_at: Mapped[utc_opt]
    guardianship_statutory_due_at: Mapped[utc_opt]
    guardianship_reported_at: Mapped[utc_opt]
    child_sex: Mapped[str] = mapped_column(String(16))
    child_iin: Mapped[str | None] = mapped_column(String(12))
    child_born_at: Mapped[utc_opt]
    child_weight_g: Mapped[int | None]
    child_condition: Mapped[str | None] = mapped_column(String(200))
    mother_iin: Mapped[str | None] = mapped_column(String(12))
    mother_full_name: Mapped[str | None] = mapped_column(String(200))
    mother_birth_date: Mapped[date | None]
    mother_citizenship: Mapped[str | None] = mapped_column(String(2))
    mother_phone: Mapped[str | None] = mapped_column(String(32))
    mother_address: Mapped[str | None] = mapped_column(String(500))
    risk_flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    notes: Mapped[text_opt]
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    # sha256 of the canonical request: an idempotent retry must match it exactly.
    content_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[ReportState] = mapped_column(_enum(ReportState), default=ReportState.OPEN,
                                               index=True)
    # Raised by the database itself (triggers, migration 0011) on every change to the report,
    # its notices or its deadlines, whoever writes: an export line rendered from an older
    # revision is never used (ExportLine).
    revision: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    facility: Mapped[Facility] = relationship()
    district: Mapped[District | None] = relationship()
    reporter: Mapped[User] = relationship()
    notices: Mapped[list[Notice]] = relationship(back_populates="report",
                                                 order_by="Notice.sent_at")
    deadlines: Mapped[list[Deadline]] = relationship(back_populates="report",
                                                     order_by="Deadline.due_at")
    amendments: Mapped[list[ReportAmendment]] = relationship(
        back_populates="report", order_by="ReportAmendment.id")
    actions: Mapped[list[ReportAction]] = relationship(order_by="ReportAction.id")
    __table_args__ = (
        # A period's reports and everything the facility figures ask of them, from the index
        # alone: the country's (also any other range of received_at: the export, the lists)
        # and a facility's.
        Index("ix_reports_received_at_outcome", "received_at", "facility_id", *_OUTCOME),
        Index("ix_reports_facility_id_received_at_outcome", "facility_id", "received_at",
              *_OUTCOME),
        # The export's order, and all its copying of lines rendered ahead needs of a report.
        Index("ix_reports_received_at_id", "received_at", "id", "revision", "facility_id"),
    )


class ReportAmendment(Base):
    """A correction of a report: who, when, why, and each field's value before and after
    ({"child.iin": {"from": ..., "to": ...}}, as the API shows them)."""

    __tablename__ = "report_amendments"
    id: Mapped[intpk]
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.id"), index=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[utc] = mapped_column(default=clock.now)
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Rows written before 0008 have none; every amendment since gives one.
    reason: Mapped[str | None] = mapped_column(String(500))
    report: Mapped[Report] = relationship(back_populates="amendments")
    author: Mapped[User] = relationship()


class Notice(Base):
    """One routing of a report to one agency."""

    __tablename__ = "notices"
    __table_args__ = (
        UniqueConstraint("report_id", "agency_id"),
        # An agency's notices of a period with every column the compliance figures read, so
        # that they never read the table (migration 0008).
        Index("ix_notices_agency_id_sent_at", "agency_id", "sent_at", "acknowledged_at",
              "ack_due_at", "escalation_level"),
        # An officer's inbox, newest report first: walked until a page is full, whatever the
        # number of the agency's reports (migration 0012).
        Index("ix_notices_agency_id_report_order", "agency_id", "report_received_at",
              "report_id"),
    )
    id: Mapped[uuidpk]
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.id"), index=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"))
    # Routed to the region's agency because the district has none: a configuration gap.
    is_fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    # The report's received_at, copied when the notice is made (it never changes): an
    # agency's reports in the order lists show them, read from this table's index alone.
    report_received_at: Mapped[utc]
    sent_at: Mapped[utc]
    ack_due_at: Mapped[utc]
    acknowledged_at: Mapped[utc_opt]
    acknowledged_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    ack_channel: Mapped[str | None] = mapped_column(String(16))
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    # When the officers were reminded that examine_child falls due (once).
    examine_reminded_at: Mapped[utc_opt]
    report: Mapped[Report] = relationship(back_populates="notices")
    agency: Mapped[Agency] = relationship()
    acknowledged_by: Mapped[User | None] = relationship()


class Deadline(Base):
    __tablename__ = "deadlines"
    __table_args__ = (
        # A report's deadline of one rule, and whether it was met in time, without reading
        # the table: the compliance figures join each report of a period to two of them.
        Index("ix_deadlines_report_id_rule", "report_id", "rule", "due_at", "met_at"),
        # What is overdue now, oldest first, among the deadlines still open only.
        Index("ix_deadlines_overdue", "due_at", sqlite_where=text("met_at IS NULL"),
              postgresql_where=text("met_at IS NULL")),
    )
    id: Mapped[intpk]
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.id"))
    notice_id: Mapped[str | None] = mapped_column(ForeignKey("notices.id"), index=True)
    rule: Mapped[str] = mapped_column(String(64))
    due_at: Mapped[utc] = mapped_column(index=True)
    met_at: Mapped[utc_opt]
    basis: Mapped[str] = mapped_column(String(500))
    is_basis_verified: Mapped[bool] = mapped_column(Boolean)
    report: Mapped[Report] = relationship(back_populates="deadlines")
    notice: Mapped[Notice | None] = relationship()


class AuditEntry(Base):
    """Append-only, hash-chained: hash = sha256(prev_hash + canonical JSON of the entry)."""

    __tablename__ = "audit_entries"
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True, autoincrement=False)
    at: Mapped[utc]
    actor_id: Mapped[int | None] = mapped_column(Integer)
    tag: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str | None] = mapped_column(String(64), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """A single row locked by every appender, so the chain never forks under concurrency."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))


class ReservedReference(Base):
    """A reference handed to a phone in advance, so an offline report shows it at once."""

    __tablename__ = "reserved_references"
    reference: Mapped[str] = mapped_column(String(32), primary_key=True)
    facility_id: Mapped[int] = mapped_column(ForeignKey("facilities.id"), index=True)
    reserved_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    reserved_at: Mapped[utc]
    expires_at: Mapped[utc]
    used_by_report_id: Mapped[str | None] = mapped_column(String(36))
    used_at: Mapped[utc_opt]


class Device(Base):
    """A phone's last heartbeat: how many reports it holds unsent, and since when."""

    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    facility_id: Mapped[int | None] = mapped_column(ForeignKey("facilities.id"), index=True)
    outbox_depth: Mapped[int] = mapped_column(Integer, default=0)
    oldest_unsent_at: Mapped[utc_opt]
    last_seen_at: Mapped[utc]
    user: Mapped[User] = relationship()


class PushSubscription(Base):
    """One browser of one user that accepts Web Push; the endpoint is user input."""

    __tablename__ = "push_subscriptions"
    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    endpoint: Mapped[str] = mapped_column(String(1000), unique=True)
    p256dh: Mapped[str] = mapped_column(String(200))
    auth: Mapped[str] = mapped_column(String(100))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[utc]
    last_success_at: Mapped[utc_opt]
    last_failure_at: Mapped[utc_opt]
    user: Mapped[User] = relationship()


class PushDelivery(Base):
    """One message for one subscription: the worker's outbox, claimed under a lease."""

    __tablename__ = "push_deliveries"
    __table_args__ = (
        # A notice's pushes of one status (a listed report's "delivered"): with a notice's
        # key alone beside the status's, SQLite without statistics read every sent push
        # for each notice of a page (migration 0013).
        Index("ix_push_deliveries_notice_id_status", "notice_id", "status"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("push_subscriptions.id", ondelete="SET NULL"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    notice_id: Mapped[str | None] = mapped_column(ForeignKey("notices.id"))
    kind: Mapped[str] = mapped_column(String(16))  # notice | reminder | escalation | test
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[utc] = mapped_column(index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[utc_opt]
    created_at: Mapped[utc]
    sent_at: Mapped[utc_opt]
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
    # A coverage gap's alert to an admin (no notice).
    gap_id: Mapped[int | None] = mapped_column(ForeignKey("coverage_gaps.id"))
    subscription: Mapped[PushSubscription | None] = relationship()
    user: Mapped[User] = relationship()
    notice: Mapped[Notice | None] = relationship()
    gap: Mapped[CoverageGap | None] = relationship()


class PushAttempt(Base):
    """Every try to hand a message to a push service, kept for the record."""

    __tablename__ = "push_attempts"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("push_deliveries.id"), index=True)
    at: Mapped[utc]
    worker: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(String(500))


class AckToken(Base):
    """A single-use acknowledgement token for one notice and one officer; stored hashed."""

    __tablename__ = "ack_tokens"
    id: Mapped[intpk]
    notice_id: Mapped[str] = mapped_column(ForeignKey("notices.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[utc]
    expires_at: Mapped[utc]
    used_at: Mapped[utc_opt]


class ReportAction(Base):
    """What an officer did: examined, placed, registered, police_informed, closed."""

    __tablename__ = "report_actions"
    id: Mapped[intpk]
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.id"), index=True)
    notice_id: Mapped[str | None] = mapped_column(ForeignKey("notices.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(String(2000))
    created_at: Mapped[utc]
    user: Mapped[User] = relationship()


class FailedAttempt(Base):
    """A failed sign-in or bearer token, by what it counts against ("account:<email>",
    "address:<ip>", "token:<ip>"): the counters every web process and host share."""

    __tablename__ = "failed_attempts"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    key: Mapped[str] = mapped_column(String(300))
    at: Mapped[utc]
    __table_args__ = (Index("ix_failed_attempts_key_at", "key", "at"),)


class ReportView(Base):
    """That one session (a sign-in, or a bearer token) has seen a report in a list: its
    report:viewed entry is written once, not on every refresh of the list."""

    __tablename__ = "report_views"
    session_key: Mapped[str] = mapped_column(String(80), primary_key=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    first_at: Mapped[utc]


class CoverageGap(Base):
    """A gap the coverage monitor found: open until it is no longer found. Its admins are
    alerted once, when it opens (a partial unique index keeps one open row per gap, so
    several workers cannot both open it)."""

    __tablename__ = "coverage_gaps"
    id: Mapped[intpk]
    kind: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(80))
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id"))
    detail: Mapped[str] = mapped_column(String(500))
    opened_at: Mapped[utc]
    closed_at: Mapped[utc_opt]
    __table_args__ = (Index("ix_coverage_gaps_open", "kind", "code", unique=True,
                            sqlite_where=text("closed_at IS NULL"),
                            postgresql_where=text("closed_at IS NULL")),)


class ExportLine(Base):
    """A report's row of the CSV export in one language, rendered ahead by the worker so that
    an export copies it instead of rendering it again. Used only while it is still true: the
    report's revision, the labels and the names of places and people it shows (fingerprint)
    are those it was rendered from, and no deadline has fallen due since (stale_at: the first
    moment a pending deadline turns overdue). Anything else is rendered afresh."""

    __tablename__ = "export_lines"
    # In the export's own order, (language, received_at, report_id): an export reads a range
    # of lines beside its range of reports. (A line is larger than SQLite keeps inside an
    # index's page: a WITHOUT ROWID table would spill every line to overflow pages.)
    # Whether a line is still true, from an index alone: the worker's pass over every report
    # never reads the lines themselves.
    __table_args__ = (Index("ix_export_lines_truth", "language", "received_at", "report_id",
                            "revision", "fingerprint", "rendered_at", "stale_at"),)
    language: Mapped[str] = mapped_column(String(8), primary_key=True)
    received_at: Mapped[utc] = mapped_column(primary_key=True)
    report_id: Mapped[str] = mapped_column(ForeignKey("reports.id", ondelete="CASCADE"),
                                           primary_key=True)
    revision: Mapped[int] = mapped_column(Integer)
    fingerprint: Mapped[str] = mapped_column(String(16))
    rendered_at: Mapped[utc]
    stale_at: Mapped[utc_opt]
    # How many notices and deadlines the line holds: the export pads them to its own slots.
    notices: Mapped[int] = mapped_column(Integer)
    deadlines: Mapped[int] = mapped_column(Integer)
    # CSV fields, comma-separated, as the export writes them: the report's and its notices'
    # (head), its deadlines' (tail).
    head: Mapped[str] = mapped_column(Text)
    tail: Mapped[str] = mapped_column(Text)
