"""cdk-nag AwsSolutions: zero unacknowledged findings.

cdk-nag 3.x is a CDK validation plugin (``Validations.of(app).add_plugins(...)``):
findings (errors and warnings alike) fail ``app.synth()`` and are written to
``validation-report.json`` in the cloud assembly; acknowledgments are made with
``Validations.of(construct).acknowledge(Acknowledgment(id=..., reason=...))``.

Nested stacks (the monitoring) are checked too: the pack walks the construct tree, and
a nested stack's constructs are children of the parent stack's (``validate_scope(stack)``
and the synth-time plugin, which gets the whole app, both reach them).
"""

from __future__ import annotations

import json

from aws_cdk import App, NestedStack, Stack, Validations
from aws_cdk import aws_sqs as sqs
from cdk_nag import AwsSolutionsChecks


def _violations(report) -> list[str]:
    return [
        f"{v.severity} {v.rule_name} at {r.construct_path}: {v.description}"
        for v in report.violations
        for r in v.violating_resources
    ]


def test_synth_passes_validation(synthesized):
    assert synthesized.synth_error is None, str(synthesized.synth_error)


def test_validation_report_has_no_findings(synthesized):
    report_file = synthesized.outdir / "validation-report.json"
    if not report_file.exists():
        return  # nothing to report
    report = json.loads(report_file.read_text())
    findings = [
        f"{v['severity']} {v['ruleName']} at {c['constructPath']}"
        for plugin in report.get("pluginReports", [])
        for v in plugin.get("violations", [])
        for c in v.get("violatingConstructs", [])
    ]
    assert findings == []


def test_aws_solutions_has_no_unacknowledged_findings(synthesized):
    report = AwsSolutionsChecks().validate_scope(synthesized.stack)
    assert _violations(report) == []


def test_the_pack_does_report(tmp_path):
    """Guards against a silently inactive pack: an unencrypted, non-TLS queue is flagged."""
    app = App(outdir=str(tmp_path), context={"aws:cdk:bundling-stacks": []})
    stack = Stack(app, "Canary")
    sqs.Queue(stack, "Queue", encryption=sqs.QueueEncryption.UNENCRYPTED)
    rules = {v.rule_name for v in AwsSolutionsChecks().validate_scope(stack).violations}
    assert {"AwsSolutions-SQS2", "AwsSolutions-SQS3", "AwsSolutions-SQS4"} <= rules


def test_the_pack_reaches_into_nested_stacks(tmp_path):
    app = App(outdir=str(tmp_path), context={"aws:cdk:bundling-stacks": []})
    stack = Stack(app, "Canary")
    sqs.Queue(NestedStack(stack, "Nested"), "Queue", encryption=sqs.QueueEncryption.UNENCRYPTED)
    paths = {r.construct_path for v in AwsSolutionsChecks().validate_scope(stack).violations
             for r in v.violating_resources}
    assert "Canary/Nested/Queue/Resource" in paths


def test_the_monitoring_nested_stack_is_checked(synthesized):
    """The nested stack is inside the scope the tests and the plugin validate."""
    nested = synthesized.monitoring.stack
    assert nested.node.scope is not None and nested.node.path.startswith(synthesized.stack.node.path + "/")
    assert len(synthesized.monitoring.resources) > 50  # the alarms and the dashboard are there


def _acknowledgments(scope) -> list[tuple[str, str, str]]:
    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    found = []
    for construct in scope.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == key:  # data: {"Annotation::<rule id>": "<reason>"}
                for rule, reason in dict(entry.data).items():
                    found.append((construct.node.path, rule.split("::", 1)[-1], reason))
    return found


def test_every_acknowledgment_is_specific(synthesized):
    acknowledgments = _acknowledgments(synthesized.stack)
    assert acknowledgments, "expected the documented acknowledgments"
    for path, rule, reason in acknowledgments:
        assert rule and rule.startswith("AwsSolutions-"), (path, rule)
        assert reason and len(reason) >= 40, (path, rule, reason)
