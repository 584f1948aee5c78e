"""A scratch database holding N reports (default 1,000,000) with their notices and deadlines.

The schema and the places come from the app itself: `flask init-db` (every migration and the
default policy) and `flask seed-demo` run through the app's own commands, then more places are
added through the models: 19 more regions (6 districts, 12 facilities, a guardianship agency
per district, a police agency per region, a reporter per facility, an officer per agency with
a device that received an alert today), and 2 more facilities in each Astana district. Only
then are reports, notices and deadlines bulk-inserted, generated as filing, acknowledging and
the officers' actions would have left them:

- received over the last two years, 90 % of them over the last year, and inserted oldest
  first as filing would have (a period's rows lie together in the tables); a facility's
  share of the reports varies (0.5 to 1.5 times the average);
- filed within the hour of discovery for 85 %, up to a day late for 13 %, up to ten days late
  for 2 %; some phones were offline for a while, a few had a clock running fast;
- one guardianship notice each (its district's agency), and a police notice for the 10 % with
  a risk flag; acknowledged within 30 minutes (75 %), late (22 %) or never (3 %), escalated as
  the worker would (level 1 at the acknowledgement deadline, 2 one interval later) and
  reminded of examine_child as the worker would;
- the deadlines of the policy in force (`report_to_guardianship`, its statutory bound,
  `inform_police` for risk-flagged reports, `acknowledge_notice` and `examine_child` per
  notice, `register_in_data_bank` once acknowledged), due as `reporting.deadlines.due_at`
  computes them, met on time, late or not at all (only guardianship notices get
  `register_in_data_bank`, as acknowledging does).

SQLite: executemany in batches inside one transaction with `synchronous=OFF` and no journal
(the scratch load only); PostgreSQL: `COPY` through psycopg with foreign-key triggers off
(`session_replication_role = replica`), then `VACUUM ANALYZE` as autovacuum would. The
secondary indexes of the three tables are dropped before the load and re-created, from their
own definitions, after it. A PostgreSQL database is dropped and created again on each run
(its name must contain "bench"); a SQLite file is replaced.

Reuse from another script: `from bulk import fill` (this directory is on `sys.path` when a
script in it runs), then `fill(database_url, reports)`. From the repository root:

    .venv/bin/python bench/bulk.py                                   # both databases
    .venv/bin/python bench/bulk.py --database sqlite --reports 100000
    .venv/bin/python bench/bulk.py --database-url sqlite:////tmp/x.db
"""

from __future__ import annotations

import argparse
import functools
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from reporting import clock, create_app
from reporting.alerts import EXAMINE_REMINDER_LEAD
from reporting.config import Settings
from reporting.db import get_db, writing
from reporting.deadlines import Calendar, Duration, due_at, exact_seconds
from reporting.models import (
    Agency,
    AgencyKind,
    District,
    Facility,
    PushSubscription,
    Region,
    Role,
    User,
)
from reporting.policy import current_rules, load_calendar
from reporting.vocabulary import AckChannel, Circumstance, RiskFlag, Sex

REPO = Path(__file__).resolve().parent.parent
DEFAULT_REPORTS = 1_000_000
SQLITE_URL = f"sqlite:///{REPO / 'instance' / 'bench' / 'besik_bench.db'}"
POSTGRESQL_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/besik_bench"
BATCH = 20_000  # reports per executemany / COPY round
SEED = 20261130
DAY, HOUR, MINUTE = 86_400, 3_600, 60
TABLES = ("reports", "notices", "deadlines")
UNUSABLE_PASSWORD = "!bench: no password signs in"  # not an argon2 hash: never verifies

# The other regions of Kazakhstan beside the demo's Astana.
REGIONS = {"ALA": "Almaty", "SHY": "Shymkent", "ABA": "Abai", "AKM": "Akmola",
           "AKT": "Aktobe", "ALM": "Almaty Region", "ATY": "Atyrau", "VOS": "East Kazakhstan",
           "ZHA": "Zhambyl", "ZHT": "Zhetisu", "ZAP": "West Kazakhstan", "KAR": "Karaganda",
           "KUS": "Kostanay", "KZY": "Kyzylorda", "MAN": "Mangystau", "PAV": "Pavlodar",
           "SEV": "North Kazakhstan", "TUR": "Turkistan", "ULY": "Ulytau"}
DISTRICTS_PER_REGION = 6
FACILITIES_PER_DISTRICT = 2


# --- places ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    """An agency a report goes to, and the officer who acknowledges for it."""

    agency_id: int
    officer_id: int | None


@dataclass(frozen=True)
class Place:
    """A facility, with what filing there needs: its region, a reporter and its routes."""

    facility_id: int
    district_id: int
    region_code: str
    reporter_id: int
    guardianship: Route
    police: Route | None


def add_places(session: Any, now: datetime) -> list[Place]:
    """The regions, districts, facilities, agencies and people beyond the demo's (through the
    models), and every facility as a Place."""
    installed = {r.code: r for r in session.query(Region)}  # init-db installed them all
    for code, name in REGIONS.items():
        region = installed.get(code) or Region(code=code, name=name)
        session.add(region)
        _add_agency(session, f"POL-{code}", f"{name} Police", AgencyKind.POLICE, region, None,
                    now)
        for d in range(1, DISTRICTS_PER_REGION + 1):
            district = District(code=f"{code}-D{d}", name=f"{name} district {d}", region=region)
            session.add(district)
            _add_agency(session, f"GRD-{code}-D{d}", f"Guardianship of {name} district {d}",
                        AgencyKind.GUARDIANSHIP, region, district, now)
            for f in range(1, FACILITIES_PER_DISTRICT + 1):
                _add_facility(session, f"{code}-D{d}-F{f}", f"{name} maternity {d}.{f}",
                              district, now)
    astana = session.query(Region).filter_by(code="AST").one()
    for district in session.query(District).filter_by(region_id=astana.id).all():
        for f in range(1, FACILITIES_PER_DISTRICT + 1):
            _add_facility(session, f"{district.code}-F{f}", f"{district.name} maternity {f}",
                          district, now)
    session.flush()
    return _places(session)


def _add_agency(session: Any, code: str, name: str, kind: AgencyKind, region: Region,
                district: District | None, now: datetime) -> None:
    agency = Agency(code=code, name=name, kind=kind, region=region, district=district,
                    phone="+7 700 000 00 00")
    officer = User(email=f"officer.{code.lower()}@bench.example", name=f"Officer {code}",
                   role=Role.OFFICER, agency=agency, password_hash=UNUSABLE_PASSWORD,
                   created_at=now)
    session.add_all([agency, officer])
    # A device that received an alert today: the district is covered, no gap to show.
    session.add(PushSubscription(user=officer, endpoint=f"https://fcm.googleapis.com/fcm/send/"
                                 f"bench-{code}", p256dh="bench", auth="bench",
                                 created_at=now, last_success_at=now))


def _add_facility(session: Any, code: str, name: str, district: District,
                  now: datetime) -> None:
    facility = Facility(code=code, name=name, kind="maternity", district=district)
    session.add_all([facility, User(email=f"nurse.{code.lower()}@bench.example",
                                    name=f"Nurse {code}", role=Role.REPORTER,
                                    facility=facility, password_hash=UNUSABLE_PASSWORD,
                                    created_at=now)])


def _places(session: Any) -> list[Place]:
    officers = {u.agency_id: u.id for u in session.query(User).filter_by(role=Role.OFFICER)
                .order_by(User.is_head.desc(), User.id.desc())}  # the last kept: not the head
    reporters = {u.facility_id: u.id for u in session.query(User)
                 .filter_by(role=Role.REPORTER).order_by(User.id.desc())}
    agencies = session.query(Agency).all()
    district_agency = {a.district_id: a for a in agencies
                       if a.kind is AgencyKind.GUARDIANSHIP and a.district_id}
    region_police = {a.region_id: a for a in agencies if a.kind is AgencyKind.POLICE}
    places = []
    for facility in session.query(Facility).order_by(Facility.id):
        region = facility.district.region
        guardianship = district_agency[facility.district_id]
        police = region_police.get(region.id)
        places.append(Place(
            facility.id, facility.district_id, region.code, reporters[facility.id],
            Route(guardianship.id, officers.get(guardianship.id)),
            Route(police.id, officers.get(police.id)) if police else None))
    return places


# --- values as each database takes them ------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CLOCK_TEXT = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.000000" for s in range(DAY)]


@dataclass
class Encoding:
    """How one database takes a moment (whole UTC seconds since 1970), a flag and JSON: the
    text SQLAlchemy's SQLite DATETIME stores, or a timestamptz literal for COPY."""

    suffix: str
    flags: tuple[Any, Any]
    _days: dict[int, str] = field(default_factory=dict)

    def moment(self, seconds: int) -> str:
        day, second = divmod(seconds, DAY)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = self._days[day] = f"{(_EPOCH + timedelta(days=day)):%Y-%m-%d} "
        return prefix + _CLOCK_TEXT[second] + self.suffix

    def maybe(self, seconds: int | None) -> str | None:
        return None if seconds is None else self.moment(seconds)

    def flag(self, value: bool) -> Any:
        return self.flags[value]


SQLITE_ENCODING = Encoding("", (0, 1))
POSTGRESQL_ENCODING = Encoding("+00", (False, True))


# --- generating the rows ---------------------------------------------------------------------

REPORT_COLUMNS = ("id", "reference", "facility_id", "district_id", "reporter_id",
                  "policy_version_id",
                  "circumstance", "discovered_at", "filed_at", "received_at", "reported_at",
                  "child_sex", "child_weight_g", "child_condition", "risk_flags", "warnings",
                  "content_hash", "state", "guardianship_due_at",
                  "guardianship_statutory_due_at", "guardianship_reported_at")
NOTICE_COLUMNS = ("id", "report_id", "agency_id", "report_received_at", "is_fallback",
                  "sent_at", "ack_due_at",
                  "acknowledged_at", "acknowledged_by_id", "ack_channel", "escalation_level",
                  "examine_reminded_at")
DEADLINE_COLUMNS = ("id", "report_id", "notice_id", "rule", "due_at", "met_at", "basis",
                    "is_basis_verified")
CIRCUMSTANCES = [c.value for c in Circumstance]
SEXES = [s.value for s in Sex]
RISK_FLAGS = [f.value for f in RiskFlag]
CHANNELS = [c.value for c in AckChannel]


@dataclass(frozen=True)
class Policy:
    """The policy in force as the generator needs it: each rule's basis and due moment."""

    version_id: int
    basis: dict[str, tuple[str, bool]]
    due: dict[str, Callable[[int], int]]


def policy_of(session: Any) -> Policy:
    """The policy in force: exact durations add seconds; calendar ones go through the app's
    own due_at (it depends only on the local day, so it is computed once per day)."""
    version_id, rules = current_rules(session)
    calendar = load_calendar(session)
    due = {name: _due_function(rule.duration, calendar) for name, rule in rules.items()}
    basis = {name: (rule.basis, rule.is_basis_verified) for name, rule in rules.items()}
    return Policy(version_id, basis, due)


def _due_function(duration: Duration, calendar: Calendar) -> Callable[[int], int]:
    seconds = exact_seconds(duration)
    if seconds is not None:
        return lambda start: start + seconds

    @functools.cache
    def by_local_day(local_day: int) -> int:
        start = _EPOCH + timedelta(days=local_day, hours=-5)  # 00:00 in Almaty (UTC+5)
        return int(due_at(start, duration, calendar).timestamp())

    return lambda start: by_local_day((start + 5 * HOUR) // DAY)


@dataclass
class Batch:
    reports: list[tuple[Any, ...]] = field(default_factory=list)
    notices: list[tuple[Any, ...]] = field(default_factory=list)
    deadlines: list[tuple[Any, ...]] = field(default_factory=list)


class Generator:
    """Reports as filing would have stored them, their notices as acknowledging and the
    worker's escalation left them, and their deadlines as the officers' actions met them."""

    def __init__(self, places: Sequence[Place], policy: Policy, now: datetime,
                 encoding: Encoding, seed: int = SEED) -> None:
        self.rng = random.Random(seed)
        self.places, self.policy, self.encoding = places, policy, encoding
        self.now = int(now.timestamp())
        self.weights = [self.rng.uniform(0.5, 1.5) for _ in places]
        self.counters: dict[tuple[str, int], int] = {}
        self.next_deadline_id = 1

    def batches(self, reports: int, size: int = BATCH) -> Iterator[Batch]:
        # Oldest first, as reports arrive: the rows of a period lie together in the tables
        # (SQLite's rowid order, PostgreSQL's heap), as in a database that grew by filing.
        received = sorted(self.now - self._age() for _ in range(reports))
        for start in range(0, reports, size):
            moments = received[start:start + size]
            batch = Batch()
            for place, moment in zip(self.rng.choices(self.places, self.weights,
                                                      k=len(moments)), moments, strict=True):
                self._report(batch, place, moment)
            yield batch

    def _age(self) -> int:
        """How long ago a report was received: 90 % within the last year, the rest in the
        year before."""
        if self.rng.random() < 0.9:
            return self.rng.randrange(365 * DAY)
        return self.rng.randrange(365 * DAY, 730 * DAY)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _reference(self, place: Place, received: int) -> str:
        year = (_EPOCH + timedelta(seconds=received + 5 * HOUR)).year  # the Almaty year
        key = (place.region_code, year)
        number = self.counters[key] = self.counters.get(key, 0) + 1
        return f"{place.region_code}-{year}-{number:06d}"

    def _report(self, batch: Batch, place: Place, received: int) -> None:
        rng, enc, now = self.rng, self.encoding, self.now
        age = now - received
        filed, reported, discovered = self._clocks(received)
        report_id = self._uuid()
        risk = [rng.choice(RISK_FLAGS)] if rng.random() < 0.10 else []
        guardianship = self._notice(batch, report_id, place.guardianship, received, True)
        police = (self._notice(batch, report_id, place.police, received, False)
                  if risk and place.police else None)
        # Met when a guardianship agency was told, as filing does; the report carries a copy.
        told = reported if guardianship is not None else None
        target = self.policy.due["report_to_guardianship"](discovered)
        statutory = self.policy.due["report_to_guardianship_statutory"](discovered)
        self._deadline(batch, report_id, None, "report_to_guardianship", target, told)
        self._deadline(batch, report_id, None, "report_to_guardianship_statutory", statutory,
                       told)
        if risk:
            self._deadline(batch, report_id, None, "inform_police",
                           self.policy.due["inform_police"](discovered),
                           received if police is not None else None)
        state = "open"
        if guardianship is not None or police is not None:
            state = "acknowledged"
            if guardianship is not None and age > 14 * DAY and rng.random() < 0.6:
                state = "closed"
        batch.reports.append((
            report_id, self._reference(place, received), place.facility_id, place.district_id,
            place.reporter_id,
            self.policy.version_id, rng.choice(CIRCUMSTANCES), enc.moment(discovered),
            enc.moment(filed), enc.moment(received), enc.moment(reported), rng.choice(SEXES),
            rng.randrange(1800, 4500), "stable", _json(risk), "[]",
            uuid.UUID(int=rng.getrandbits(128)).hex * 2, state, enc.moment(target),
            enc.moment(statutory), enc.maybe(told)))

    def _clocks(self, received: int) -> tuple[int, int, int]:
        """(filed_at, reported_at, discovered_at) for a report received at `received`."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.95:
            filed = received - rng.randrange(0, 6)  # sent at once
        else:
            filed = received - rng.randrange(MINUTE, 6 * HOUR)  # the phone was offline
        roll = rng.random()
        if roll < 0.85:
            delay = rng.randrange(MINUTE, 55 * MINUTE)
        elif roll < 0.98:
            delay = rng.randrange(HOUR + MINUTE, DAY)
        else:
            delay = rng.randrange(DAY, 10 * DAY)
        discovered = filed - delay
        if rng.random() < 0.005:  # a phone clock running fast: our clock counts instead
            filed = received + rng.randrange(5 * MINUTE, 2 * HOUR)
            return filed, received, discovered
        return filed, filed, discovered

    def _notice(self, batch: Batch, report_id: str, route: Route, sent: int,
                is_guardianship: bool) -> int | None:
        """Add the notice and its deadlines; the moment it was acknowledged, if it was."""
        rng, enc, now = self.rng, self.encoding, self.now
        notice_id = self._uuid()
        ack_due = self.policy.due["acknowledge_notice"](sent)
        interval = ack_due - sent
        roll = rng.random()
        if roll < 0.75:
            acked: int | None = sent + rng.randrange(MINUTE, max(interval - MINUTE, 2 * MINUTE))
        elif roll < 0.92:
            acked = ack_due + rng.randrange(MINUTE, DAY)
        elif roll < 0.97:
            acked = ack_due + rng.randrange(DAY, 10 * DAY)
        else:
            acked = None
        if acked is not None and acked > now:
            acked = None  # not yet
        waited = (acked if acked is not None else now) - sent
        level = (waited >= interval) + (waited >= 2 * interval)
        reminded = None
        if is_guardianship:
            due = self.policy.due["examine_child"](sent)
            examined = self._acted(acked, 0.85, 4 * DAY)
            self._deadline(batch, report_id, notice_id, "examine_child", due, examined)
            reminded = _reminded(acked, due, examined, now)
        batch.notices.append((
            # Sent as the report was received (filing routes it then).
            notice_id, report_id, route.agency_id, enc.moment(sent), enc.flag(False),
            enc.moment(sent),
            enc.moment(ack_due), enc.maybe(acked),
            route.officer_id if acked is not None else None,
            rng.choice(CHANNELS) if acked is not None else None, level, enc.maybe(reminded)))
        self._deadline(batch, report_id, notice_id, "acknowledge_notice", ack_due, acked)
        if acked is not None and is_guardianship:
            due = self.policy.due["register_in_data_bank"](acked)
            met = self._acted(acked, 0.75, 3 * DAY)
            self._deadline(batch, report_id, notice_id, "register_in_data_bank", due, met)
        return acked

    def _acted(self, acked: int | None, share: float, within: int) -> int | None:
        """When an officer's action met a deadline after the acknowledgement, if it did."""
        if acked is None or self.rng.random() >= share:
            return None
        met = acked + self.rng.randrange(HOUR, within)
        return met if met <= self.now else None

    def _deadline(self, batch: Batch, report_id: str, notice_id: str | None, rule: str,
                  due: int, met: int | None) -> None:
        basis, verified = self.policy.basis[rule]
        batch.deadlines.append((self.next_deadline_id, report_id, notice_id, rule,
                                self.encoding.moment(due), self.encoding.maybe(met), basis,
                                self.encoding.flag(verified)))
        self.next_deadline_id += 1


def _reminded(acked: int | None, due: int, examined: int | None, now: int) -> int | None:
    """When the worker reminded the officers that examine_child falls due (once, from
    EXAMINE_REMINDER_LEAD before it, to an acknowledged notice still unexamined)."""
    if acked is None:
        return None
    moment = max(acked, due - int(EXAMINE_REMINDER_LEAD.total_seconds()))
    if moment > now or (examined is not None and examined <= moment):
        return None
    return moment


def _json(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


# --- loading ---------------------------------------------------------------------------------

def recreate(database_url: str) -> None:
    """Start from nothing: remove the SQLite file, or drop and create the PostgreSQL
    database (only one whose name says it is a bench's)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        path.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm", "-writelock"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    name = url.database or ""
    if "bench" not in name:
        raise SystemExit(f"refusing to drop database {name!r}: its name must contain 'bench'")
    server = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT",
                           poolclass=NullPool)
    with server.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    server.dispose()


def prepare(database_url: str, instance: Path) -> tuple[list[Place], Policy, datetime]:
    """The app's init-db and seed-demo, then the places beyond the demo's."""
    app = create_app(Settings(database_url=database_url, secret_key="bench-" + "x" * 32,
                              env="demo", instance_path=instance,
                              vapid_private_key_file=instance / "vapid_private.pem",
                              audit_key_file=instance / "audit.key"))
    runner = app.test_cli_runner()
    for command in (["init-db"], ["seed-demo"]):
        result = runner.invoke(args=command)
        if result.exit_code != 0:
            raise RuntimeError(f"flask {command[0]} failed: {result.output}{result.exception}")
    now = clock.now()
    with app.app_context():
        with writing() as session:
            places = add_places(session, now)
            policy = policy_of(session)
        get_db().dispose()
    return places, policy, now


def _secondary_indexes_sqlite(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    marks = ", ".join("?" for _ in TABLES)
    return list(conn.execute(f"SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                             f"AND sql IS NOT NULL AND tbl_name IN ({marks})", TABLES))


def load_sqlite(path: str, batches: Iterator[Batch]) -> dict[str, int]:
    """executemany in one transaction, without the indexes the load does not need."""
    conn = sqlite3.connect(path, isolation_level=None)
    counts = dict.fromkeys(TABLES, 0)
    try:
        # The scratch load only: a crash here means running it again.
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-1000000")  # 1 GB: the primary keys are random UUIDs
        conn.execute("BEGIN")
        indexes = _secondary_indexes_sqlite(conn)
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        for batch in batches:
            for table, columns, rows in _tables_of(batch):
                conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                                 f"({', '.join('?' for _ in columns)})", rows)
                counts[table] += len(rows)
        for _, sql in indexes:
            conn.execute(sql)
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")  # what the app's connections expect
    finally:
        conn.close()
    return counts


def load_postgresql(database_url: str, batches: Iterator[Batch]) -> dict[str, int]:
    """COPY in one transaction, without the indexes the load does not need, then VACUUM
    ANALYZE (what autovacuum would do soon after such a load)."""
    engine = create_engine(database_url, poolclass=NullPool)
    counts = dict.fromkeys(TABLES, 0)
    raw = engine.raw_connection()
    try:
        conn = raw.driver_connection
        with conn.cursor() as cur:
            # Generated consistent: skip the per-row foreign-key triggers.
            cur.execute("SET session_replication_role = replica")
            cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s) "
                        "AND indexname NOT IN (SELECT conname FROM pg_constraint)",
                        (list(TABLES),))
            indexes = cur.fetchall()
            for name, _ in indexes:
                cur.execute(f'DROP INDEX "{name}"')
            for batch in batches:
                for table, columns, rows in _tables_of(batch):
                    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row(row)
                    counts[table] += len(rows)
            for _, sql in indexes:
                cur.execute(sql)
            cur.execute("SELECT setval(pg_get_serial_sequence('deadlines', 'id'), "
                        "(SELECT max(id) FROM deadlines))")
        conn.commit()
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("VACUUM ANALYZE")
    finally:
        raw.close()
        engine.dispose()
    return counts


def _tables_of(batch: Batch) -> list[tuple[str, Sequence[str], list[tuple[Any, ...]]]]:
    return [("reports", REPORT_COLUMNS, batch.reports),
            ("notices", NOTICE_COLUMNS, batch.notices),
            ("deadlines", DEADLINE_COLUMNS, batch.deadlines)]


def save_counters(database_url: str, counters: dict[tuple[str, int], int]) -> None:
    """The reference counters continue after the generated references: filing goes on."""
    engine = create_engine(database_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM reference_counters"))
        conn.execute(text("INSERT INTO reference_counters (region_code, year, last_value) "
                          "VALUES (:region, :year, :value)"),
                     [{"region": region, "year": year, "value": value}
                      for (region, year), value in counters.items()])
    engine.dispose()


def fill(database_url: str, reports: int = DEFAULT_REPORTS) -> None:
    """Build a scratch database at `database_url` holding `reports` reports (see above)."""
    started = time.perf_counter()
    is_sqlite = make_url(database_url).get_backend_name() == "sqlite"
    recreate(database_url)
    with tempfile.TemporaryDirectory(prefix="besik-bulk-") as instance:
        places, policy, now = prepare(database_url, Path(instance))
    prepared = time.perf_counter()
    generator = Generator(places, policy, now,
                          SQLITE_ENCODING if is_sqlite else POSTGRESQL_ENCODING)
    batches = generator.batches(reports)
    if is_sqlite:
        counts = load_sqlite(make_url(database_url).database or "", batches)
    else:
        counts = load_postgresql(database_url, batches)
    save_counters(database_url, generator.counters)
    done = time.perf_counter()
    print(f"{make_url(database_url).render_as_string()}: {counts['reports']:,} reports, "
          f"{counts['notices']:,} notices, {counts['deadlines']:,} deadlines, "
          f"{len(places)} facilities; schema and places {prepared - started:.1f} s, "
          f"rows and indexes {done - prepared:.1f} s, total {done - started:.1f} s",
          flush=True)


def urls_for(database: str) -> list[str]:
    """The scratch URLs of --database sqlite|postgresql|both."""
    return {"sqlite": [SQLITE_URL], "postgresql": [POSTGRESQL_URL],
            "both": [SQLITE_URL, POSTGRESQL_URL]}[database]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=DEFAULT_REPORTS)
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--database-url", help=f"instead of --database (default SQLite: "
                                               f"{SQLITE_URL}; PostgreSQL: {POSTGRESQL_URL})")
    args = parser.parse_args()
    for url in [args.database_url] if args.database_url else urls_for(args.database):
        fill(url, args.reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
