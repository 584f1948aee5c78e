"""The flask commands of CONTRACT §3. Each command is one transaction."""

from __future__ import annotations

import sys
from datetime import date
from typing import Any, NoReturn, TypeVar

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import audit, clock, demo, digests, exports, places, workdays
from .accounts import deactivate, find_user, revoke_tokens
from .bodies import (
    AGENCY_NEW,
    CALENDAR_DAY_CLI,
    CALENDAR_QUERY,
    CALENDAR_UNSET,
    DISTRICT_NEW,
    EXPORT_QUERY,
    FACILITY_NEW,
    POLICY_SET,
)
from .config import Settings
from .db import get_db, reading, writing
from .deadlines import to_local
from .errors import NotFoundError, ValidationError
from .migrate import upgrade
from .models import Agency, Facility, Region, Role, User
from .passwords import hash_password, password_problems
from .policy import change_rule, current_rules, ensure_default_policy
from .push import ensure_vapid_key, public_key_b64
from .tokens import create_token
from .worker import Worker

T = TypeVar("T", Facility, Agency, Region)


def register(app: Flask) -> None:
    """Attach the commands to the app."""
    for command in (init_db, seed_demo, create_user, create_token_cmd, deactivate_user,
                    revoke_tokens_cmd, policy, calendar, audit_verify, audit_digest, export,
                    worker, vapid_keys, create_district, create_facility, create_agency):
        app.cli.add_command(command)


@click.command("init-db")
@with_appcontext
def init_db() -> None:
    """Apply all migrations, install the default deadline policy and Kazakhstan's regions
    (idempotent)."""
    db = get_db()
    upgrade(db.engine)
    with writing() as session:
        ensure_default_policy(session, clock.now())
        places.install_regions(session, clock.now())
    if digests.ensure_key(_settings().audit_key_file):
        click.echo(f"created the audit digest key {_settings().audit_key_file}: keep a copy "
                   "apart from the database backups")
    click.echo("database ready")


@click.command("seed-demo")
@click.option("--if-empty", is_flag=True, help="Only when the database has no users yet.")
@with_appcontext
def seed_demo(if_empty: bool) -> None:
    """Load the demo data (refused outside BESIK_ENV=demo)."""
    if not current_app.config["BESIK"].is_demo:
        raise click.ClickException("seed-demo only runs with BESIK_ENV=demo")
    with writing() as session:
        if if_empty and not demo.is_empty(session):
            click.echo("database already has data: demo not loaded")
            return
        demo.seed_demo(session, clock.now())
    click.echo(f"demo data loaded; every demo user's password is {demo.DEMO_PASSWORD}")


@click.command("create-user")
@click.option("--email", required=True)
@click.option("--name", required=True)
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--facility", "facility_code")
@click.option("--agency", "agency_code")
@click.option("--region", "region_code")
@click.option("--head", is_flag=True)
@with_appcontext
def create_user(email: str, name: str, role: str, facility_code: str | None,
                agency_code: str | None, region_code: str | None, head: bool) -> None:
    """Create a user; the password is read from stdin and must pass the password policy."""
    password = sys.stdin.readline().rstrip("\n")
    problems = password_problems(password, email)
    if problems:
        _bad_input(f"the password (read from stdin) is refused: {' '.join(problems)}")
    with writing() as session:
        if session.scalar(select(User).where(User.email == email.lower())) is not None:
            _bad_input(f"a user with email {email} already exists")
        user = User(email=email.strip().lower(), name=name, role=Role(role),
                    password_hash=hash_password(password), is_head=head, created_at=clock.now())
        if role == Role.REPORTER:
            user.facility = _find(session, Facility, facility_code, "--facility")
        elif role == Role.OFFICER:
            user.agency = _find(session, Agency, agency_code, "--agency")
        elif region_code:
            user.region = _find(session, Region, region_code, "--region")
        session.add(user)
        session.flush()
        audit.record(session, "user:created", actor_id=None, subject=f"user:{user.id}",
                     data={"email": user.email, "role": role, "head": head}, now=clock.now())
    click.echo(f"created {user.email}")


def _find(session: Session, model: type[T], code: str | None, option: str) -> T:
    if not code:
        _bad_input(f"{option} is required for this role")
    found = session.scalar(select(model).where(model.code == code))
    if found is None:
        _bad_input(f"no such {option.strip('-')}: {code}")
    return found


def _bad_input(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@click.command("create-token")
@click.option("--email", required=True)
@click.option("--name", "label", default="api", show_default=True)
@with_appcontext
def create_token_cmd(email: str, label: str) -> None:
    """Print a new API bearer token (shown once, stored hashed)."""
    with writing() as session:
        user = find_user(session, email)
        if user is None:
            _bad_input(f"no user with email {email}")
        token = create_token(session, user, label, clock.now())
    click.echo(token)


@click.command("deactivate-user")
@click.option("--email", required=True)
@with_appcontext
def deactivate_user(email: str) -> None:
    """The user can no longer sign in; their sessions and tokens stop at once."""
    with writing() as session:
        user = find_user(session, email)
        if user is None:
            _bad_input(f"no user with email {email}")
        deactivate(session, user, actor_id=None, now=clock.now())
        revoke_tokens(session, user, actor_id=None, now=clock.now())
    click.echo(f"deactivated {email.strip().lower()}")


@click.command("revoke-tokens")
@click.option("--email", required=True)
@with_appcontext
def revoke_tokens_cmd(email: str) -> None:
    """Every API token of the user stops working."""
    with writing() as session:
        user = find_user(session, email)
        if user is None:
            _bad_input(f"no user with email {email}")
        count = revoke_tokens(session, user, actor_id=None, now=clock.now())
    click.echo(f"revoked {count} token(s) of {email.strip().lower()}")


@click.group("policy")
def policy() -> None:
    """Show or change the deadline policy."""


@policy.command("show")
@with_appcontext
def policy_show() -> None:
    """Print the rules in force: rule, duration, basis, verified."""
    with reading() as session:
        version_id, rules = current_rules(session)
    click.echo(f"# policy version {version_id}")
    for rule in rules.values():
        verified = "verified" if rule.is_basis_verified else "UNVERIFIED"
        click.echo(f"{rule.name}\t{rule.duration}\t{rule.basis}\t{verified}")


@policy.command("set")
@click.argument("rule")
@click.argument("duration")
@with_appcontext
def policy_set(rule: str, duration: str) -> None:
    """Change one rule's duration (90s, 30min, 24h, 3d, 3wd); audited."""
    try:
        args = POLICY_SET.clean({"rule": rule, "duration": duration})
        with writing() as session:
            version = change_rule(session, args["rule"], duration=args["duration"],
                                  actor_id=None, now=clock.now())
            version_id = version.id if version else current_rules(session)[0]
    except ValidationError as exc:
        _bad_input(_field_errors(exc))
    unchanged = "" if version else "unchanged, "
    click.echo(f"{rule} = {args['duration']} ({unchanged}policy version {version_id})")


def _field_errors(exc: ValidationError) -> str:
    return "; ".join(f"{name}: {message}" for name, message in exc.fields.items())


@click.group("calendar")
def calendar() -> None:
    """Override the Kazakhstan working-day calendar (day-off transfers) or list overrides."""


@calendar.command("set")
@click.argument("day", metavar="YYYY-MM-DD")
@click.argument("kind", metavar="working|day-off")
@click.option("--reason", help="Why, e.g. the government decree that moves the day off.")
@with_appcontext
def calendar_set(day: str, kind: str, reason: str | None) -> None:
    """Make a day a working day or a day off whatever the holidays library says; audited;
    applies to deadlines computed afterwards."""
    given = {"day": day, "kind": kind, "reason": reason}
    try:
        args = CALENDAR_DAY_CLI.clean({k: v for k, v in given.items() if v is not None})
        with writing() as session:
            changed = workdays.set_day(session, args["day"], is_working=args["kind"] == "working",
                                       reason=args.get("reason"), actor_id=None,
                                       now=clock.now())
    except ValidationError as exc:
        _bad_input(_field_errors(exc))
    click.echo(f"{args['day'].isoformat()} = {args['kind']}{'' if changed else ' (unchanged)'}")


@calendar.command("unset")
@click.argument("day", metavar="YYYY-MM-DD")
@with_appcontext
def calendar_unset(day: str) -> None:
    """Remove a day's override: the holidays library's answer counts again; audited."""
    try:
        args = CALENDAR_UNSET.clean({"day": day})
        with writing() as session:
            workdays.unset_day(session, args["day"], actor_id=None, now=clock.now())
    except ValidationError as exc:
        _bad_input(_field_errors(exc))
    click.echo(f"{args['day'].isoformat()}: override removed")


@calendar.command("show")
@click.option("--year", help="Default: this year (Kazakhstan time).")
@with_appcontext
def calendar_show(year: str | None) -> None:
    """Print each override of the year: YYYY-MM-DD<TAB>working|day-off<TAB>reason."""
    try:
        args = CALENDAR_QUERY.clean({"year": year} if year is not None else {})
    except ValidationError as exc:
        _bad_input(_field_errors(exc))
    with reading() as session:
        overrides = workdays.overrides_in(session, args.get("year", to_local(clock.now()).year))
    for override in overrides:
        click.echo(f"{override.day.isoformat()}\t{workdays.kind_of(override.is_working_day)}"
                   f"\t{override.note or ''}")


@click.command("audit-verify")
@click.option("--digest", "digest_line", help="Also check the chain against a digest line.")
@with_appcontext
def audit_verify(digest_line: str | None) -> None:
    """Check the audit hash chain (and that it still holds a published digest's head)."""
    with reading() as session:
        if digest_line is None:
            result = audit.verify(session)
        else:
            try:
                result = digests.check(session, _audit_key(), digest_line)
            except digests.DigestError as exc:
                _bad_input(str(exc))
    if result.is_ok:
        click.echo(f"ok {result.entries} {result.head}")
        return
    click.echo(f"broken at entry {result.bad_seq}: {result.reason}")
    sys.exit(1)


@click.command("audit-digest")
@click.option("--date", "day", help="An Almaty day, YYYY-MM-DD (default: today, so far).")
@with_appcontext
def audit_digest(day: str | None) -> None:
    """Print the chain's head at the end of a day, signed: '<date> <entries> <head> <hmac>'."""
    try:
        chosen = date.fromisoformat(day) if day else to_local(clock.now()).date()
    except ValueError:
        _bad_input(f"not a date (YYYY-MM-DD): {day}")
    with reading() as session:
        click.echo(digests.digest_of(session, _audit_key(), chosen).line())


def _audit_key() -> bytes:
    try:
        return digests.load_key(_settings().audit_key_file)
    except digests.DigestError as exc:
        raise click.ClickException(str(exc)) from None


def _settings() -> Settings:
    settings: Settings = current_app.config["BESIK"]
    return settings


@click.command("export")
@click.option("--format", "file_format", required=True, type=click.Choice(["csv", "xlsx"]))
@click.option("--from", "first_day", metavar="YYYY-MM-DD", help="First Almaty day of receipt.")
@click.option("--to", "last_day", metavar="YYYY-MM-DD", help="Last Almaty day of receipt.")
@click.option("--region", metavar="CODE")
@click.option("--facility", metavar="CODE")
@click.option("--agency", metavar="CODE", help="Only reports notified to this agency.")
@click.option("--lang", default="en", type=click.Choice(["kk", "ru", "en"]),
              help="Language of the headers and labels.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, writable=True))
@with_appcontext
def export(file_format: str, first_day: str | None, last_day: str | None, region: str | None,
           facility: str | None, agency: str | None, lang: str, out: str) -> None:
    """Write the compliance log (one row per report) as CSV or XLSX; audited."""
    given = {"format": file_format, "from": first_day, "to": last_day, "region": region,
             "facility": facility, "agency": agency, "lang": lang}
    try:
        args = EXPORT_QUERY.clean({k: v for k, v in given.items() if v is not None})
        with reading() as session:
            filters = exports.resolve_filters(session, args, None)
    except ValidationError as exc:
        _bad_input("; ".join(f"--{name}: {message}" for name, message in exc.fields.items()))
    except NotFoundError:
        _bad_input("no such region, facility or agency")
    job = exports.Export(args["format"], filters, lang, clock.now())
    with open(out, "wb") as file:
        for chunk in exports.run(job, None):
            file.write(chunk)
    click.echo(f"{job.rows} reports written to {out}")


def _create_place(schema: Any, operation: Any, given: dict[str, str | None]) -> None:
    """Validate as the admin's form does, create, audit (no actor: the command line)."""
    try:
        data = schema.clean({k: v for k, v in given.items() if v is not None})
        with writing() as session:
            place = operation(session, data, places.Actor(None, None), clock.now())
            click.echo(f"created {place.code}")
    except ValidationError as exc:
        _bad_input("; ".join(f"--{name}: {message}" for name, message in exc.fields.items()))


@click.command("create-district")
@click.option("--region", required=True, metavar="CODE")
@click.option("--code", required=True)
@click.option("--name", required=True)
@with_appcontext
def create_district(region: str, code: str, name: str) -> None:
    """Add a district to a region."""
    _create_place(DISTRICT_NEW, places.create_district,
                  {"region": region, "code": code, "name": name})


@click.command("create-facility")
@click.option("--district", required=True, metavar="CODE")
@click.option("--code", required=True)
@click.option("--name", required=True)
@click.option("--kind", default="maternity",
              type=click.Choice(["maternity", "perinatal", "polyclinic", "emergency",
                                 "private"]))
@with_appcontext
def create_facility(district: str, code: str, name: str, kind: str) -> None:
    """Add a facility to a district."""
    _create_place(FACILITY_NEW, places.create_facility,
                  {"district": district, "code": code, "name": name, "kind": kind})


@click.command("create-agency")
@click.option("--code", required=True)
@click.option("--name", required=True)
@click.option("--kind", required=True, type=click.Choice(["guardianship", "police"]))
@click.option("--district", metavar="CODE", help="Its jurisdiction: one district ...")
@click.option("--region", metavar="CODE", help="... or a whole region.")
@click.option("--phone")
@with_appcontext
def create_agency(code: str, name: str, kind: str, district: str | None, region: str | None,
                  phone: str | None) -> None:
    """Add a guardianship or police agency with its jurisdiction."""
    _create_place(AGENCY_NEW, places.create_agency,
                  {"code": code, "name": name, "kind": kind, "district": district,
                   "region": region, "phone": phone})


@click.command("worker")
@click.option("--once", is_flag=True, help="One pass (escalate, deliver), then exit.")
@with_appcontext
def worker(once: bool) -> None:
    """Deliver push messages and fire escalations."""
    settings = current_app.config["BESIK"]
    if not settings.vapid_private_key_file.exists():
        raise click.ClickException(
            f"no VAPID key at {settings.vapid_private_key_file}: run 'flask vapid-keys'")
    runner = Worker(get_db(), settings)
    if once:
        result = runner.run_once()
        click.echo(f"escalated {result.escalated} reminded {result.reminded} sent {result.sent} "
                   f"retried {result.retried} failed {result.failed} gone {result.gone}")
        return
    runner.run_forever(settings.worker_poll_seconds)


@click.command("vapid-keys")
@with_appcontext
def vapid_keys() -> None:
    """Create the VAPID key pair when absent; print the public key."""
    path = current_app.config["BESIK"].vapid_private_key_file
    created = ensure_vapid_key(path)
    click.echo(f"{'created' if created else 'kept'} {path}")
    click.echo(public_key_b64(str(path)))
