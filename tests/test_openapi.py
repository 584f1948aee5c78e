"""The OpenAPI document covers every API route, is valid OpenAPI 3.1, and the live API keeps
to it for every role (schemathesis)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from reporting.openapi import API_PREFIX, openapi_document
from tests.conftest import bearer, serving

ROLES = {"reporter": "nurse@besik.example", "officer": "officer@besik.example",
         "police": "police@besik.example", "admin": "admin@besik.example"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]
EXAMPLES_PER_OPERATION = 15


def _api_rules(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(API_PREFIX + "/"):
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                yield rule, method


def test_every_api_route_is_in_the_document(app):
    paths = openapi_document(app)["paths"]
    missing = []
    for rule, method in _api_rules(app):
        path = rule.rule[len(API_PREFIX):].replace("<", "{").replace(">", "}")
        if method.lower() not in paths.get(path, {}):
            missing.append(f"{method} {rule.rule}")
    assert missing == []
    assert len(list(_api_rules(app))) >= 16


def test_a_route_without_an_operation_is_found_missing(app):
    """The walk above can fail: an undeclared route is left out of the document."""
    from reporting.access import allow
    from reporting.models import Role

    @allow(Role.ADMIN)
    def undeclared() -> str:
        return ""

    app.add_url_rule(f"{API_PREFIX}/undeclared", view_func=undeclared)
    assert "/undeclared" not in openapi_document(app)["paths"]


def test_the_document_is_valid_openapi_3_1(client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_report_out_is_a_real_schema(app):
    report_out = openapi_document(app)["components"]["schemas"]["ReportOut"]
    assert {"id", "reference", "notices", "deadlines", "state"} <= set(report_out["required"])


def test_the_live_api_keeps_to_its_document_for_every_role(app):
    headers = {role: bearer(app, email) for role, email in ROLES.items()}
    with serving(app) as base_url:
        schema = schemathesis.openapi.from_url(f"{base_url}/api/v1/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        documented = {f"{method.upper()} {path}"
                      for path, methods in openapi_document(app)["paths"].items()
                      for method in methods}
        # Schemathesis leaves out the operation that serves the document itself.
        assert documented - {o.label for o in operations} == {"GET /openapi.json"}
        for operation in operations:
            strategy = operation.as_strategy()

            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True,
                      database=None, phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=strategy)
            def keeps_to_the_document(case) -> None:
                for role_headers in headers.values():
                    case.call_and_validate(base_url=f"{base_url}{API_PREFIX}",
                                           headers=role_headers, checks=CHECKS)

            keeps_to_the_document()
