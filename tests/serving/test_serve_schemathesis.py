"""Schemathesis against the live server's OpenAPI document: no generated request, valid
or not, may get a 5xx; answers must match the documented schemas and status codes.

Operations are driven through `APIOperation.as_strategy()` with Hypothesis directly:
`schemathesis.pytest.from_fixture` does not work with this pytest version."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from serve_process import ServerProcess

# ~5 operations x 60 examples: ~300 requests, a few seconds.
EXAMPLES_PER_OPERATION = 60


def test_no_server_errors_on_generated_requests(server: ServerProcess) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/get-online-features", "/get-online-tensor"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(
                checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
                timeout=10,
            )

        check()
