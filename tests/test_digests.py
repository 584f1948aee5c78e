"""Daily audit digests: signed with a key outside the database, they catch a log that was
rewritten and re-hashed, or truncated, though such a log verifies in itself."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from reporting import audit, digests
from reporting.deadlines import to_local
from reporting.worker import Worker
from tests.conftest import bearer, report_body


def _digest(app, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["audit-digest", *args])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def _verify(app, line: str):
    return app.test_cli_runner().invoke(args=["audit-verify", "--digest", line])


def _rehash_from(app, first_seq: int, *, drop_from: int | None = None) -> None:
    """What an attacker with the database would do: change or cut entries, then recompute
    every hash and the head, so that the chain is consistent in itself again."""
    from sqlalchemy import delete, select

    from reporting.models import AuditEntry, AuditHead

    database = app.extensions["besik.db"]
    with database.writing() as session:
        if not database.is_sqlite:  # a superuser's replica session skips the triggers
            session.execute(text("SET LOCAL session_replication_role = replica"))
        if drop_from is not None:
            session.execute(delete(AuditEntry).where(AuditEntry.seq >= drop_from))
        prev, last_seq = audit.GENESIS, 0
        for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.seq)):
            if entry.seq == first_seq:
                entry.subject = "user:999"
            entry.prev_hash = prev
            entry.hash = prev = audit.entry_hash(prev, audit._body(
                entry.seq, entry.at, entry.actor_id, entry.tag, entry.subject, entry.data))
            last_seq = entry.seq
        head = session.get_one(AuditHead, 1)
        head.seq, head.hash = last_seq, prev


def test_the_digest_line_verifies_while_the_log_is_untouched(app, client, nurse):
    client.post("/api/v1/reports", json=report_body(), headers=nurse)
    line = _digest(app)
    _day, entries, head, signature = line.split()
    assert int(entries) > 3 and len(head) == len(signature) == 64
    result = _verify(app, line)
    assert result.exit_code == 0, result.output
    # Appending after the digest is fine: the digest is a prefix of the chain.
    client.post("/api/v1/reports", json=report_body(), headers=nurse)
    assert _verify(app, line).exit_code == 0


def test_a_rewritten_and_rehashed_log_fails_the_digest(app, client, nurse):
    client.post("/api/v1/reports", json=report_body(), headers=nurse)
    line = _digest(app)
    _rehash_from(app, 2)
    assert app.test_cli_runner().invoke(args=["audit-verify"]).exit_code == 0  # consistent
    result = _verify(app, line)
    assert result.exit_code == 1
    assert "digest" in result.output


def test_a_truncated_and_rehashed_log_fails_the_digest(app, client, nurse):
    client.post("/api/v1/reports", json=report_body(), headers=nurse)
    line = _digest(app)
    entries = int(line.split()[1])
    _rehash_from(app, 0, drop_from=entries - 1)
    assert app.test_cli_runner().invoke(args=["audit-verify"]).exit_code == 0
    assert _verify(app, line).exit_code == 1


def test_a_forged_digest_line_fails_and_a_malformed_one_is_exit_2(app):
    line = _digest(app)
    day, entries, head, _signature = line.split()
    forged = f"{day} {entries} {head} {'0' * 64}"
    assert _verify(app, forged).exit_code == 1
    assert _verify(app, "yesterday 3 abc").exit_code == 2


def test_a_digest_of_an_earlier_day_covers_only_that_days_entries(app, client, nurse, clock):
    today = to_local(clock.now()).date()
    before = _digest(app, "--date", (today - timedelta(days=1)).isoformat())
    client.post("/api/v1/reports", json=report_body(), headers=nurse)
    assert before.split()[1] == "0" or int(before.split()[1]) < int(_digest(app).split()[1])


def test_the_api_answers_the_same_digest_as_the_command(app, client):
    admin = bearer(app, "admin@besik.example")  # creating a token is audited too
    line = _digest(app).split()
    answer = client.get(f"/api/v1/audit/digest?date={line[0]}", headers=admin).get_json()
    assert [answer["date"], str(answer["entries"]), answer["head"], answer["hmac"]] == line
    assert client.get("/api/v1/audit/digest",
                      headers=bearer(app, "officer@besik.example")).status_code == 403


def test_the_worker_writes_each_finished_days_digest_once(app, clock):
    key = digests.load_key(app.config["BESIK"].audit_key_file)
    log_path = app.config["BESIK"].audit_digest_log
    worker = Worker(app.extensions["besik.db"], app.config["BESIK"], name="w1")
    worker.run_once()
    worker.run_once()
    lines = log_path.read_text().splitlines()
    yesterday = to_local(clock.now()).date() - timedelta(days=1)
    assert [line.split()[0] for line in lines] == [yesterday.isoformat()]
    clock.advance(timedelta(days=2))
    Worker(app.extensions["besik.db"], app.config["BESIK"], name="w2").run_once()
    days = [line.split()[0] for line in log_path.read_text().splitlines()]
    assert days == [(yesterday + timedelta(days=n)).isoformat() for n in range(3)]
    with app.extensions["besik.db"].reading() as session:
        for line in log_path.read_text().splitlines():
            assert digests.check(session, key, line).is_ok


def test_the_audit_list_filters_by_event_and_day_and_pages(app, client, nurse, clock):
    admin = bearer(app, "admin@besik.example")
    for _ in range(3):
        client.post("/api/v1/reports", json=report_body(), headers=nurse)
    filed = client.get("/api/v1/audit?event=report:filed&limit=2", headers=admin).get_json()
    assert [e["event"] for e in filed["items"]] == ["report:filed"] * 2
    assert filed["items"][0]["seq"] > filed["items"][1]["seq"]  # newest first
    rest = client.get(f"/api/v1/audit?event=report:filed&cursor={filed['next_cursor']}",
                      headers=admin).get_json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    assert rest["items"][0]["actor"]["name"] == "Aigerim Nurlanovna"
    notices = client.get("/api/v1/audit?event=notice", headers=admin).get_json()["items"]
    assert notices and all(e["event"].startswith("notice:") for e in notices)
    today = to_local(clock.now()).date()
    tomorrow = (today + timedelta(days=1)).isoformat()
    later = client.get(f"/api/v1/audit?from={tomorrow}", headers=admin).get_json()
    assert later["items"] == []
    assert client.get(f"/api/v1/audit?to={today.isoformat()}",
                      headers=admin).get_json()["items"]
    assert client.get("/api/v1/audit", headers=nurse).status_code == 403
    assert client.get("/api/v1/audit?limit=0", headers=admin).status_code == 422


def test_the_audit_page_lists_entries_with_filters_and_the_verification(app, client, nurse):
    from tests.conftest import login

    for _ in range(2):
        client.post("/api/v1/reports", json=report_body(), headers=nurse)
    login(client, "admin@besik.example")
    page = client.get("/admin/audit?event=report:filed&limit=1")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "The chain is intact" in html
    assert html.count("data-seq=") == 1 and "report:filed" in html
    older = html.split('rel="next" href="/admin/audit?')[1].split('"')[0].replace("&amp;", "&")
    assert "cursor=" in older
    assert client.get(f"/admin/audit?{older}").get_data(as_text=True).count("data-seq=") == 1
    assert client.get("/admin/audit?from=yesterday").status_code == 422
