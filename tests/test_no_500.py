"""No input answers 500: arbitrary JSON to every POST endpoint of the API, as every role,
gets an answer in the contract's shape, and nothing is written when it is refused."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from reporting.models import AuditEntry
from reporting.openapi import API_PREFIX
from tests.conftest import bearer, report_body

ROLES = ("nurse@besik.example", "officer@besik.example", "police@besik.example",
         "admin@besik.example")
# Values a person, a broken phone or an attacker might send, beside arbitrary JSON.
AWKWARD = ["\x00", "\ud800", "a\r\nb", "", " ", "2026-11-29T10:15:00+05:00",
           "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "2026-02-30",
           "250115601231", "25011560123x", "written_refusal", "female", "examined",
           "https://fcm.googleapis.com/x", "http://[::1/x", "AST-2026-000001", 2**70, -1, 1e308,
           True, None, [], {}]
KEYS = ["id", "circumstance", "discovered_at", "filed_at", "reference", "child", "mother",
        "risk_flags", "notes", "note", "action", "token", "count", "device_id",
        "outbox_depth", "oldest_unsent_at", "endpoint", "expirationTime", "keys", "changes",
        "reason"]
NESTED_KEYS = ["sex", "iin", "born_at", "weight_g", "condition", "full_name", "birth_date",
               "citizenship", "phone", "address", "p256dh", "auth"]
LEAF = st.sampled_from(AWKWARD) | st.none() | st.booleans() | st.integers() | st.floats(
    allow_nan=False) | st.text(max_size=30)
VALUE = st.recursive(LEAF, lambda children: st.lists(children, max_size=3) | st.dictionaries(
    st.sampled_from(NESTED_KEYS) | st.text(max_size=8), children, max_size=5), max_leaves=12)
BODY = st.fixed_dictionaries({}, optional={key: VALUE for key in KEYS}) | VALUE
EXAMPLES_PER_ENDPOINT_AND_ROLE = 30


def _post_rules(app, report_id: str, notice_id: str) -> list[str]:
    urls = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(API_PREFIX + "/") and "POST" in (rule.methods or ()):
            urls.append(rule.rule.replace("<report_id>", report_id)
                        .replace("<notice_id>", notice_id))
    return sorted(urls)


def _audit_count(app) -> int:
    with app.extensions["besik.db"].reading() as session:
        return session.scalar(select(func.count()).select_from(AuditEntry))


def test_no_json_body_answers_500_or_writes_on_refusal(app, client, nurse):
    report = client.post("/api/v1/reports", json=report_body(), headers=nurse).get_json()
    urls = _post_rules(app, report["id"], report["notices"][0]["id"])
    assert len(urls) >= 7
    callers = [bearer(app, email) for email in ROLES] + [{}]

    @settings(max_examples=EXAMPLES_PER_ENDPOINT_AND_ROLE, deadline=None, derandomize=True,
              database=None, suppress_health_check=list(HealthCheck))
    @given(body=BODY, garbled=st.booleans())
    def never_500(url: str, who: dict, body, garbled: bool) -> None:
        before = _audit_count(app)
        data = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
        if garbled:  # also bytes that are not valid UTF-8 or JSON at all
            data = data[: len(data) // 2] + b"\xff\xfe"
        response = client.post(url, data=data, headers={**who,
                                                        "Content-Type": "application/json"})
        assert response.status_code < 500, (url, body, response.get_data(as_text=True))
        if response.status_code >= 400:
            error = response.get_json()["error"]
            assert isinstance(error["code"], str) and isinstance(error["message"], str)
            assert _audit_count(app) == before, (url, body)

    for url in urls:
        for who in callers:
            never_500(url, who)


def test_json_nested_thousands_deep_is_400(client, nurse):
    deep = b"[" * 20_000 + b"]" * 20_000
    response = client.post("/api/v1/reports", data=deep, headers={
        **nurse, "Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_request"


def test_text_with_nul_or_a_lone_surrogate_is_422(client, nurse):
    for bad in ("a\x00b", "\ud800"):
        body = json.dumps(report_body(notes=bad)).encode("utf-8", "surrogatepass")
        response = client.post("/api/v1/reports", data=body, headers={
            **nurse, "Content-Type": "application/json"})
        assert response.status_code in (400, 422), bad
        assert response.status_code != 500


def test_years_1_and_9999_are_422(client, nurse):
    for moment in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00",
                   "2023-12-31T23:00:00+05:00"):
        response = client.post("/api/v1/reports", json=report_body(discovered_at=moment),
                               headers=nurse)
        assert response.status_code == 422, moment
        assert "discovered_at" in response.get_json()["error"]["fields"]


def _valid_bodies(report_id: str) -> dict[str, dict]:
    """A valid body per POST operation: the starting point of every mutation below."""
    return {
        "/reports": report_body(child={"sex": "female", "iin": "250115601231",
                                       "born_at": "2026-11-28T22:40:00+05:00",
                                       "weight_g": 3100, "condition": "stable"},
                                mother={"iin": "851231300124", "full_name": "A B",
                                        "birth_date": "1985-12-31", "citizenship": "KZ",
                                        "phone": "+77010000000", "address": "x"},
                                risk_flags=["payment_suspected"], notes="n",
                                filed_at="2026-11-29T10:16:30+05:00"),
        "/amendments": {"changes": {"child": {"iin": "250115601231",
                                              "born_at": "2026-11-28T22:40:00+05:00",
                                              "weight_g": 3000, "condition": "stable"},
                                    "mother": {"iin": "851231300124", "full_name": "A B",
                                               "birth_date": "1985-12-31",
                                               "citizenship": "KZ", "phone": "+77010000000",
                                               "address": "x"},
                                    "risk_flags": ["payment_suspected"], "notes": "n"},
                        "reason": "a correction"},
        "/acknowledge": {"note": "on it"},
        "/actions": {"action": "examined", "note": "n"},
        "/ack": {"token": "x" * 20},
        "/references/reserve": {"count": 1},
        "/devices/heartbeat": {"device_id": "device-0001", "outbox_depth": 1,
                               "oldest_unsent_at": "2026-11-29T10:16:30+05:00"},
        "/push/subscriptions": {"endpoint": "https://fcm.googleapis.com/fcm/send/x",
                                "expirationTime": 1, "keys": {"p256dh": "B" * 87,
                                                              "auth": "A" * 22}},
    }


def _paths(body: dict, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for key, value in body.items():
        found.append((*prefix, key))
        if isinstance(value, dict):
            found += _paths(value, (*prefix, key))
    return found


def _with(body: dict, path: tuple[str, ...], value) -> dict:
    copy = json.loads(json.dumps(body))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


def test_every_field_of_every_operation_takes_every_awkward_value_without_a_500(app, client,
                                                                                 nurse):
    """Exhaustive where the random search above is sparse: one field at a time."""
    report = client.post("/api/v1/reports", json=report_body(), headers=nurse).get_json()
    notice = report["notices"][0]["id"]
    roles = {"/reports": nurse, "/references/reserve": nurse, "/devices/heartbeat": nurse,
             "/amendments": nurse}
    officer = bearer(app, "officer@besik.example")
    urls = {"/reports": "/api/v1/reports",
            "/amendments": f"/api/v1/reports/{report['id']}/amendments",
            "/acknowledge": f"/api/v1/reports/{report['id']}/acknowledge",
            "/actions": f"/api/v1/reports/{report['id']}/actions",
            "/ack": f"/api/v1/notices/{notice}/ack",
            "/references/reserve": "/api/v1/references/reserve",
            "/devices/heartbeat": "/api/v1/devices/heartbeat",
            "/push/subscriptions": "/api/v1/push/subscriptions"}
    client.post(urls["/acknowledge"], headers=officer)  # so that actions get to validation
    tried = 0
    for name, body in _valid_bodies(report["id"]).items():
        for path in _paths(body):
            for value in AWKWARD:
                mutated = _with(body, path, value)
                data = json.dumps(mutated, ensure_ascii=False).encode("utf-8", "surrogatepass")
                response = client.post(urls[name], data=data, headers={
                    **roles.get(name, officer), "Content-Type": "application/json"})
                assert response.status_code < 500, (name, path, value)
                tried += 1
    assert tried > 500
