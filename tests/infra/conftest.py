"""Synthesizes the kefu stack once per test session, as ``cdk synth`` would.

The app is built by infra.app.build (so the cdk-nag AwsSolutions plugin is registered
exactly as in production) with cdk.json's context, except that asset bundling is
skipped (``aws:cdk:bundling-stacks: []``): no pip download, ~0.6 s instead of ~5 s.
A failed validation (an unacknowledged cdk-nag finding) does not stop the other
tests: the error is kept for test_nag.py and the template is read from the outdir.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from infra.app import build  # noqa: E402
from infra.stack import KefuStack  # noqa: E402


@dataclass
class Synthesized:
    app: App
    stack: KefuStack
    outdir: Path
    template_path: Path
    template_json: dict
    template: Template
    synth_error: Exception | None

    @property
    def resources(self) -> dict:
        return self.template_json["Resources"]

    def of_type(self, resource_type: str) -> dict[str, dict]:
        return {k: v for k, v in self.resources.items() if v["Type"] == resource_type}

    def logical_id(self, construct) -> str:
        return self.stack.get_logical_id(construct.node.default_child)


def cdk_context() -> dict:
    context = dict(json.loads((ROOT / "cdk.json").read_text())["context"])
    context["aws:cdk:bundling-stacks"] = []
    return context


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory) -> Synthesized:
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = App(outdir=str(outdir), context=cdk_context())
    stack = build(app)
    error: Exception | None = None
    try:
        app.synth()
    except Exception as exc:  # noqa: BLE001 - jsii raises RuntimeError("ValidationFailed: ...")
        error = exc
    template_path = outdir / stack.template_file
    template_json = json.loads(template_path.read_text())
    return Synthesized(
        app=app,
        stack=stack,
        outdir=outdir,
        template_path=template_path,
        template_json=template_json,
        template=Template.from_json(template_json),
        synth_error=error,
    )


@pytest.fixture(scope="session")
def template(synthesized) -> Template:
    return synthesized.template
