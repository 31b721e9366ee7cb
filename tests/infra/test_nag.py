"""cdk-nag AwsSolutions and NIST 800-53 rev. 5: zero unacknowledged findings.

cdk-nag 3.x is a CDK validation plugin (``Validations.of(app).add_plugins(...)``):
findings (errors and warnings alike) fail ``app.synth()`` and are written to
``validation-report.json`` in the cloud assembly; acknowledgments are made with
``Validations.of(construct).acknowledge(Acknowledgment(id=..., reason=...))``.

Both packs are registered in ``infra/app.py`` (a finding of either fails ``cdk synth``) and
checked here directly. What NIST 800-53 R5 reported, what was fixed and why the rest is
acknowledged: docs/security.md (*cdk-nag packs*).

Nested stacks (the monitoring) are checked too: the pack walks the construct tree, and
a nested stack's constructs are children of the parent stack's (``validate_scope(stack)``
and the synth-time plugin, which gets the whole app, both reach them).
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from aws_cdk import App, NestedStack, Stack, Validations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from cdk_nag import AwsSolutionsChecks, NIST80053R5Checks
from kefu import schema

from infra.app import build

from .conftest import cdk_context

# every pack the app registers, by the prefix of its rule ids
PACKS = {"AwsSolutions": AwsSolutionsChecks, "NIST.800.53.R5": NIST80053R5Checks}
# What each pack must report on the canary (an unencrypted, non-TLS queue and an unencrypted log group), and the
# construct it must find inside a nested stack: a silently inactive pack would pass everything.
CANARY_RULES = {
    "AwsSolutions": ({"AwsSolutions-SQS2", "AwsSolutions-SQS3", "AwsSolutions-SQS4"}, "Queue"),
    "NIST.800.53.R5": ({"NIST.800.53.R5-CloudWatchLogGroupEncrypted"}, "Logs"),
}
# NIST 800-53 R5 rules that the stack satisfies since issue 8 (they were findings before): none may be acknowledged.
NIST_FIXED = {
    "NIST.800.53.R5-CloudWatchLogGroupEncrypted",
    "NIST.800.53.R5-S3BucketVersioningEnabled",
    "NIST.800.53.R5-WAFv2LoggingEnabled",
}


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


@pytest.mark.parametrize("pack", PACKS)
def test_no_unacknowledged_findings(synthesized, pack):
    report = PACKS[pack]().validate_scope(synthesized.stack)
    assert _violations(report) == []


def test_the_app_registers_both_packs(synthesized):
    """``cdk synth`` runs the same packs as these tests (a finding of either fails it)."""
    # (deprecated, but aws-cdk-lib 2.275's Python Validations has no ``plugins`` yet to read them from)
    plugins = {plugin.name for plugin in synthesized.app.policy_validation_beta1}
    assert set(PACKS) <= plugins


def _canary(scope) -> None:
    sqs.Queue(scope, "Queue", encryption=sqs.QueueEncryption.UNENCRYPTED)
    logs.LogGroup(scope, "Logs", retention=logs.RetentionDays.ONE_DAY)


@pytest.mark.parametrize("pack", PACKS)
def test_the_pack_does_report(tmp_path, pack):
    """Guards against a silently inactive pack: an unencrypted, non-TLS queue and an unencrypted log group."""
    app = App(outdir=str(tmp_path), context={"aws:cdk:bundling-stacks": []})
    stack = Stack(app, "Canary")
    _canary(stack)
    rules = {v.rule_name for v in PACKS[pack]().validate_scope(stack).violations}
    assert CANARY_RULES[pack][0] <= rules


@pytest.mark.parametrize("pack", PACKS)
def test_the_pack_reaches_into_nested_stacks(tmp_path, pack):
    app = App(outdir=str(tmp_path), context={"aws:cdk:bundling-stacks": []})
    stack = Stack(app, "Canary")
    _canary(NestedStack(stack, "Nested"))
    paths = {r.construct_path for v in PACKS[pack]().validate_scope(stack).violations
             for r in v.violating_resources}
    assert f"Canary/Nested/{CANARY_RULES[pack][1]}/Resource" in paths


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
    for pack in PACKS:
        assert any(rule.startswith(f"{pack}-") for _, rule, _ in acknowledgments), pack
    for path, rule, reason in acknowledgments:
        assert rule and any(rule.startswith(f"{pack}-") for pack in PACKS), (path, rule)
        assert reason and len(reason) >= 40, (path, rule, reason)
        assert rule not in NIST_FIXED, (path, rule)


@pytest.fixture(scope="module")
def unacknowledged(tmp_path_factory) -> dict[str, list[tuple[str, str]]]:
    """What each pack reports on the same app built with every acknowledgment left out: (rule, path)."""
    app = App(outdir=str(tmp_path_factory.mktemp("unacknowledged")), context=cdk_context())
    with pytest.MonkeyPatch.context() as patch:  # acknowledgments are construct metadata, made while building
        patch.setattr(Validations, "acknowledge", lambda self, *acknowledgments: None)
        stack = build(app)
    assert not _acknowledgments(stack)
    return {
        pack: [(v.rule_name, r.construct_path) for v in cls().validate_scope(stack).violations
               for r in v.violating_resources]
        for pack, cls in PACKS.items()
    }


def test_every_acknowledgment_silences_a_finding(synthesized, unacknowledged):
    """No stale or misplaced acknowledgment: each names a rule that its construct (or one inside it) breaks."""
    findings = [finding for found in unacknowledged.values() for finding in found]
    stale = [(path, rule) for path, rule, _ in _acknowledgments(synthesized.stack)
             if not any(r == rule and (p == path or p.startswith(path + "/")) for r, p in findings)]
    assert stale == []


def test_nist_findings_are_the_documented_ones(unacknowledged):
    """NIST 800-53 R5 before acknowledgments: the rules docs/security.md's table (cdk-nag packs) gives reasons for,
    on the resources it names (95 findings of 11 rules when written; 122 of 14 before issue 8's fixes)."""
    counts = Counter(rule for rule, _ in unacknowledged["NIST.800.53.R5"])
    functions = len(schema.FUNCTIONS) + 1  # and aws-cdk-lib's BucketDeployment handler
    assert counts == {
        "NIST.800.53.R5-APIGWCacheEnabledAndEncrypted": 1,  # the REST stage
        "NIST.800.53.R5-APIGWSSLEnabled": 1,
        "NIST.800.53.R5-DynamoDBInBackupPlan": len(schema.TABLES),
        # the functions' roles, the content deployment's, the escalation machine's, API Gateway's logging role
        "NIST.800.53.R5-IAMNoInlinePolicy": len(schema.FUNCTIONS) + 3,
        "NIST.800.53.R5-LambdaConcurrency": functions,
        "NIST.800.53.R5-LambdaDLQ": functions,
        "NIST.800.53.R5-LambdaInsideVPC": functions,
        "NIST.800.53.R5-OpenSearchInVPCOnly": 1,
        "NIST.800.53.R5-S3BucketReplicationEnabled": len(schema.BUCKETS) + 2,  # and the web and log buckets
        "NIST.800.53.R5-S3DefaultEncryptionKMS": 2,  # the web and log buckets (SSE-S3)
        "NIST.800.53.R5-SecretsManagerRotationEnabled": 1,
    }
    assert not set(counts) & NIST_FIXED
