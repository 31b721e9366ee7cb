"""schemathesis against docs/openapi.json on the local stack: generated requests (valid and invalid) to every
operation, as an admin with an integrator key of the same workspace. No server errors, and every answer
conforms to the document (status codes, content types, bodies, including the one error shape)."""

from __future__ import annotations

import os

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks as st_checks

from kefu_local import openapi

EXAMPLES = int(os.environ.get("KEFU_FUZZ_EXAMPLES", "12"))  # per operation; the benchmark runs more
# What is checked: server errors, documented status codes, content types and response bodies. Not checked:
# that every schema-valid request succeeds (ids made up by the generator are rightly 404).
CHECKS = [st_checks.not_a_server_error, st_checks.status_code_conformance, st_checks.content_type_conformance,
          st_checks.response_schema_conformance]


@pytest.fixture
def desk(world):
    world.agent("ada", "Ada", role="admin")
    token = world.token("agent", "ada")
    key = requests.post(f"{world.stack.api_url}/workspaces/{world.workspace}/api-keys", json={"name": "fuzz"},
                        headers={"Authorization": f"Bearer {token}"}, timeout=10).json()["key"]
    return world, {"Authorization": f"Bearer {token}", "x-api-key": key}


def test_no_operation_fails_or_breaks_its_contract(desk):
    world, headers = desk
    schema = schemathesis.openapi.from_dict(openapi.build())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    failures: list[str] = []
    calls = 0

    for operation in operations:
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def run(case):
            nonlocal calls
            if case.path_parameters and "workspace" in case.path_parameters and hash(case.path) % 4:
                case.path_parameters["workspace"] = world.workspace  # mostly ours: reach the handlers' logic
            calls += 1
            try:
                case.call_and_validate(base_url=world.stack.api_url, headers=headers, checks=CHECKS)
            except (Exception, BaseExceptionGroup) as error:  # collect: one report lists every broken operation
                failures.append(f"{operation.label}: {str(error)[:600]}")
                raise

        try:
            run()
        except (Exception, BaseExceptionGroup):
            pass  # recorded in failures

    assert calls >= len(operations) * 3
    assert not failures, "\n\n".join(failures[:10])
