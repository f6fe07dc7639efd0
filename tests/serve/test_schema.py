"""Schemathesis against the app's own OpenAPI schema: no generated request makes the server fail,
and every answer is documented (status code and body schema)."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def test_no_server_errors(client):
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    labels = []
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case):
            case.call_and_validate(checks=CHECKS)

        check()
    assert "POST /v1/visual/search" in labels and "POST /v1/rank" in labels
