"""Synthesizes the kefu stack once per test session, as ``cdk synth`` would.

The app is built by infra.app.build (so the cdk-nag AwsSolutions plugin is registered
exactly as in production) with cdk.json's context, except that asset bundling is
skipped (``aws:cdk:bundling-stacks: []``): no pip download, ~0.6 s instead of ~5 s.
A failed validation (an unacknowledged cdk-nag finding) does not stop the other
tests: the error is kept for test_nag.py and the template is read from the outdir.

Nested stacks (the monitoring) have templates of their own in the outdir:
``synthesized.nested`` holds each, with the parameters the parent passes it, and
``synthesized.monitoring`` is the one holding the alarms and the dashboard. Their
``of_type`` replaces each ``Ref`` to a parameter with what the parent passes, so a
nested alarm's dimension reads ``{"Ref": "<the function's logical id in the parent>"}``
exactly as it did when the alarms were in the parent.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from aws_cdk import App, NestedStack, Stack  # noqa: E402
from aws_cdk.assertions import Template  # noqa: E402

from infra.app import build  # noqa: E402
from infra.stack import KefuStack  # noqa: E402


def _substitute(value, parameters: dict):
    """``value`` with every ``{"Ref": <parameter>}`` replaced by the parent's value for it."""
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in parameters:
            return parameters[value["Ref"]]
        return {k: _substitute(v, parameters) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, parameters) for v in value]
    return value


@dataclass
class Nested:
    """A nested stack's template, and how the parent stack creates it."""

    stack: NestedStack
    resource_id: str  # its AWS::CloudFormation::Stack in the parent template
    template_path: Path
    template_json: dict
    parameters: dict  # parameter name -> the parent's value (a template expression)
    template: Template

    @property
    def resources(self) -> dict:
        return self.template_json["Resources"]

    def of_type(self, resource_type: str) -> dict[str, dict]:
        """Resources of this type, with references to parameters resolved into the parent's values."""
        return {k: _substitute(v, self.parameters) for k, v in self.resources.items() if v["Type"] == resource_type}


@dataclass
class Synthesized:
    app: App
    stack: KefuStack
    outdir: Path
    template_path: Path
    template_json: dict
    template: Template
    synth_error: Exception | None
    nested: dict[str, Nested] = field(default_factory=dict)  # by construct path

    @property
    def resources(self) -> dict:
        return self.template_json["Resources"]

    def of_type(self, resource_type: str) -> dict[str, dict]:
        return {k: v for k, v in self.resources.items() if v["Type"] == resource_type}

    def logical_id(self, construct) -> str:
        """The logical id of a construct's resource in its own (parent or nested) stack's template."""
        return Stack.of(construct).get_logical_id(construct.node.default_child)

    @property
    def monitoring(self) -> Nested:
        return self.nested[self.stack.monitoring.stack.node.path]

    def templates(self) -> dict[str, Path]:
        """Every template of the app (the parent's and each nested stack's), by stack path."""
        return {self.stack.node.path: self.template_path, **{p: n.template_path for p, n in self.nested.items()}}


def _nested_stacks(stack: Stack, outdir: Path, parent_resources: dict) -> dict[str, Nested]:
    found = {}
    for construct in stack.node.find_all():
        if construct is stack or not NestedStack.is_nested_stack(construct):
            continue
        parent = construct.nested_stack_parent  # find_all is pre-order: a parent comes before its children
        resources = parent_resources if parent is stack else found[parent.node.path].resources
        resource_id = parent.get_logical_id(construct.nested_stack_resource)
        path = outdir / construct.template_file
        template_json = json.loads(path.read_text())
        found[construct.node.path] = Nested(
            stack=construct,
            resource_id=resource_id,
            template_path=path,
            template_json=template_json,
            parameters=resources[resource_id]["Properties"].get("Parameters", {}),
            template=Template.from_json(template_json),
        )
    return found


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
        nested=_nested_stacks(stack, outdir, template_json["Resources"]),
    )


@pytest.fixture(scope="session")
def template(synthesized) -> Template:
    return synthesized.template
