"""Every handler imports with exactly the environment the stack gives its function.

The local stack runs every function in one process with every variable set, so a
handler that reads, at import, a variable its schema entry does not grant (and infra
therefore does not set) only fails on AWS, at cold start. Here each handler module is
imported in a fresh interpreter whose environment is the function's ``Environment``
from the synthesized template (references replaced by placeholders) and nothing else:
no network, no credentials; creating boto3 clients needs neither.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from kefu import schema

from infra import DOMAIN_PYTHON, ROOT

# Functions whose handler is known not to import with its deployed environment yet, and why.
# Strict: once one is fixed it XPASSes and fails the run, so that its entry is removed here.
KNOWN_COLD_START_GAPS: dict[str, str] = {}  # name -> why it cannot import yet (strict xfail)


def _placeholder(name: str, value) -> str:
    if isinstance(value, str):
        return value
    if name.endswith("_URL"):  # endpoint_url of a boto3 client must parse
        return "https://placeholder.invalid/stage"
    return f"placeholder-{name.lower()}"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(f.name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_COLD_START_GAPS[f.name]))
        if f.name in KNOWN_COLD_START_GAPS
        else f.name
        for f in schema.FUNCTIONS
    ],
)
def test_handler_imports_with_its_deployed_environment(synthesized, tmp_path, name):
    function = synthesized.stack.functions.functions[name]
    props = synthesized.resources[synthesized.logical_id(function)]["Properties"]
    variables = props["Environment"]["Variables"]
    env = {key: _placeholder(key, value) for key, value in variables.items()}
    env.update(
        PATH=os.environ.get("PATH", ""),
        HOME=str(tmp_path),  # no ~/.aws of the machine
        PYTHONPATH=str(DOMAIN_PYTHON),  # the domain layer; the dependencies come with the interpreter
        PYTHONDONTWRITEBYTECODE="1",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    result = subprocess.run(
        [sys.executable, "-c", "import handler"],
        cwd=ROOT / "functions" / name,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{name} fails at import with {sorted(variables)}:\n{result.stderr[-2000:]}"
