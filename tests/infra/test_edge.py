"""The edge (issue 8): the REST API's WAF web ACL, the WebSocket stage's throttling, and the
monitoring moved into a nested stack (the parent stack's resource budget)."""

from __future__ import annotations

import json

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk.assertions import Match, Template
from kefu import schema

from infra import realtime, waf
from infra.realtime import Realtime
from infra.waf import RestWebAcl

from .test_stack import refs


def _joined_with_refs(value) -> str:
    """A template string with its Fn::Join parts concatenated, references written as <Ref>/<Ref.Attr>."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(_joined_with_refs(p) for p in parts)
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return "<{}.{}>".format(*value["Fn::GetAtt"])
    return json.dumps(value)


def _small_app(context: dict) -> Stack:
    app = App(context={"aws:cdk:bundling-stacks": [], **context})
    return Stack(app, "Small")


# ---------------------------------------------------------------- WAF on the REST API


@pytest.fixture(scope="module")
def web_acl(synthesized) -> tuple[str, dict]:
    acls = synthesized.of_type("AWS::WAFv2::WebACL")
    assert len(acls) == 1
    ((logical, acl),) = acls.items()
    return logical, acl["Properties"]


def test_the_rest_web_acl_is_regional_and_allows_by_default(web_acl):
    _, acl = web_acl
    assert acl["Scope"] == "REGIONAL"
    assert acl["DefaultAction"] == {"Allow": {}}
    assert acl["Name"] == "Kefu-rest"  # the stack's name: the dashboard names the WebACL metric dimension


def test_the_rest_web_acl_has_the_rate_rule_then_the_managed_rule_groups(web_acl):
    _, acl = web_acl
    rules = sorted(acl["Rules"], key=lambda r: r["Priority"])
    assert [r["Name"] for r in rules] == ["RatePerIp", "KnownBadInputs", "CommonRuleSet"]
    assert [r["Priority"] for r in rules] == [0, 1, 2]

    rate, known_bad, common = rules
    assert rate["Action"] == {"Block": {}}
    assert rate["Statement"]["RateBasedStatement"] == {
        "AggregateKeyType": "IP",
        "Limit": waf.DEFAULT_RATE_LIMIT,  # cdk.json sets no kefu:wafRateLimit
        "EvaluationWindowSec": 300,
    }
    assert waf.DEFAULT_RATE_LIMIT == 2000

    for rule, group in ((known_bad, "AWSManagedRulesKnownBadInputsRuleSet"), (common, "AWSManagedRulesCommonRuleSet")):
        statement = rule["Statement"]["ManagedRuleGroupStatement"]
        assert (statement["VendorName"], statement["Name"]) == ("AWS", group)
        assert rule["OverrideAction"] == {"None": {}}  # the group's own actions (block) apply
        assert "Action" not in rule
        assert "ExcludedRules" not in statement and "ScopeDownStatement" not in statement
    assert "RuleActionOverrides" not in known_bad["Statement"]["ManagedRuleGroupStatement"]
    # only the 8 KB body limit is relaxed (to count): knowledge-base imports are up to 6 MB
    assert common["Statement"]["ManagedRuleGroupStatement"]["RuleActionOverrides"] == [
        {"Name": "SizeRestrictions_BODY", "ActionToUse": {"Count": {}}}
    ]


def test_the_rest_web_acl_publishes_metrics_and_samples_for_every_rule(web_acl):
    _, acl = web_acl
    configs = [acl["VisibilityConfig"], *(r["VisibilityConfig"] for r in acl["Rules"])]
    for config in configs:
        assert config["CloudWatchMetricsEnabled"] is True and config["SampledRequestsEnabled"] is True
        assert config["MetricName"] and " " not in config["MetricName"]
    assert {r["VisibilityConfig"]["MetricName"] for r in acl["Rules"]} == set(waf.WAF_RULES)


def test_the_web_acl_is_associated_with_the_rest_stage(synthesized, web_acl):
    acl_id, _ = web_acl
    associations = synthesized.of_type("AWS::WAFv2::WebACLAssociation")
    assert len(associations) == 1
    (association,) = associations.values()
    props = association["Properties"]
    assert props["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    (rest_api,) = synthesized.of_type("AWS::ApiGateway::RestApi")
    (stage,) = synthesized.of_type("AWS::ApiGateway::Stage")
    arn = _joined_with_refs(props["ResourceArn"])
    assert arn == f"arn:<AWS::Partition>:apigateway:<AWS::Region>::/restapis/<{rest_api}>/stages/<{stage}>"
    assert synthesized.logical_id(synthesized.stack.rest.api.deployment_stage) == stage


def test_the_web_acl_logs_blocked_and_counted_requests_without_credentials(synthesized, web_acl):
    acl_id, _ = web_acl
    (config,) = synthesized.of_type("AWS::WAFv2::LoggingConfiguration").values()
    props = config["Properties"]
    assert props["ResourceArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    # to a log group named as WAF requires, by the ARN without LogGroup.log_group_arn's ":*"
    (destination,) = props["LogDestinationConfigs"]
    arn = _joined_with_refs(destination)
    assert arn.startswith("arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:aws-waf-logs-Kefu-rest-")
    assert not arn.endswith(":*")
    groups = {k: g for k, g in synthesized.of_type("AWS::Logs::LogGroup").items()
              if "aws-waf-logs-" in json.dumps(g["Properties"].get("LogGroupName"))}
    ((group_id, group),) = groups.items()
    assert arn.endswith(_joined_with_refs(group["Properties"]["LogGroupName"]))
    assert group_id in config.get("DependsOn", [])
    key = synthesized.logical_id(synthesized.stack.data.key)
    assert refs(group["Properties"]["KmsKeyId"]) == {key} and group["Properties"]["RetentionInDays"] == 30
    # only what a rule blocked or counted; allowed requests are dropped
    assert props["LoggingFilter"] == {
        "DefaultBehavior": "DROP",
        "Filters": [{"Behavior": "KEEP", "Requirement": "MEETS_ANY",
                     "Conditions": [{"ActionCondition": {"Action": "BLOCK"}},
                                    {"ActionCondition": {"Action": "COUNT"}}]}],
    }
    redacted = props["RedactedFields"]
    assert {"QueryString": {}} in redacted
    assert {f["SingleHeader"]["Name"] for f in redacted if "SingleHeader" in f} >= {
        "authorization", "x-api-key", "x-kefu-step-up"}


def test_the_waf_rate_limit_comes_from_context():
    stack = _small_app({"kefu:wafRateLimit": "5000"})  # `cdk synth -c kefu:wafRateLimit=5000` passes a string
    acl = RestWebAcl(stack, "Waf")
    assert acl.rate_limit == 5000
    Template.from_stack(stack).has_resource_properties(
        "AWS::WAFv2::WebACL",
        {"Rules": Match.array_with([Match.object_like(
            {"Name": "RatePerIp", "Statement": {"RateBasedStatement": Match.object_like({"Limit": 5000})}}
        )])},
    )


@pytest.mark.parametrize("value", ["many", "5", "3000000000", "2000.5"])
def test_a_waf_rate_limit_waf_would_refuse_fails_the_synth(value):
    with pytest.raises(ValueError, match="kefu:wafRateLimit"):
        RestWebAcl(_small_app({"kefu:wafRateLimit": value}), "Waf")


def test_no_waf_acknowledgment_is_left(synthesized):
    """AwsSolutions-APIG3 (REST stage without a web ACL) is satisfied, not acknowledged."""
    key = Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    acknowledged = [
        rule
        for construct in synthesized.stack.node.find_all()
        for entry in construct.node.metadata
        if entry.type == key
        for rule in dict(entry.data)
    ]
    assert acknowledged and not [rule for rule in acknowledged if "APIG3" in rule]


# ---------------------------------------------------------------- WebSocket stage throttling


def test_the_websocket_stage_throttles_every_route_by_default(synthesized):
    (stage,) = synthesized.of_type("AWS::ApiGatewayV2::Stage").values()
    settings = stage["Properties"]["DefaultRouteSettings"]
    assert settings["ThrottlingRateLimit"] == realtime.THROTTLE_RATE_LIMIT
    assert settings["ThrottlingBurstLimit"] == realtime.THROTTLE_BURST_LIMIT
    # no route is exempted from the stage's default
    assert not stage["Properties"].get("RouteSettings")


def test_the_websocket_throttling_comes_from_context():
    stack = _small_app({"kefu:wsRateLimit": "50", "kefu:wsBurstLimit": 100})
    Realtime(stack, "Realtime")
    Template.from_stack(stack).has_resource_properties(
        "AWS::ApiGatewayV2::Stage",
        {"StageName": schema.WS_STAGE,
         "DefaultRouteSettings": Match.object_like({"ThrottlingRateLimit": 50, "ThrottlingBurstLimit": 100})},
    )


def test_a_websocket_throttle_of_zero_fails_the_synth():
    with pytest.raises(ValueError, match="kefu:wsBurstLimit"):
        Realtime(_small_app({"kefu:wsBurstLimit": "0"}), "Realtime")


# ---------------------------------------------------------------- monitoring in a nested stack


def test_the_alarms_and_the_dashboard_live_in_the_monitoring_nested_stack(synthesized):
    monitoring = synthesized.monitoring
    assert not synthesized.of_type("AWS::CloudWatch::Alarm")
    assert not synthesized.of_type("AWS::CloudWatch::Dashboard")
    alarms = monitoring.of_type("AWS::CloudWatch::Alarm")
    assert len(alarms) == len(synthesized.stack.monitoring.alarms) >= 2 * len(schema.FUNCTIONS)
    assert len(monitoring.of_type("AWS::CloudWatch::Dashboard")) == 1
    # nothing else: the topic and its key policy stay in the parent
    assert {r["Type"] for r in monitoring.resources.values()} == {"AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard"}


def test_the_parent_creates_the_nested_stack_and_passes_it_what_it_watches(synthesized):
    nested_stacks = synthesized.of_type("AWS::CloudFormation::Stack")
    monitoring = synthesized.monitoring
    assert set(nested_stacks) == {monitoring.resource_id}
    resource = nested_stacks[monitoring.resource_id]
    # the template is an asset of the parent (uploaded by cdk deploy), named after the nested stack's file
    assets = json.loads((synthesized.outdir / f"{synthesized.stack.artifact_id}.assets.json").read_text())["files"]
    url = _joined_with_refs(resource["Properties"]["TemplateURL"])
    (asset,) = [a for asset_hash, a in assets.items() if asset_hash in url]
    assert asset["source"]["path"] == monitoring.template_path.name
    # every parameter the nested template declares is passed, and each is a reference to a parent resource
    declared = set(monitoring.template_json.get("Parameters", {}))
    assert declared == set(monitoring.parameters)
    for name, value in monitoring.parameters.items():
        assert refs(value) and refs(value) <= set(synthesized.resources), name
    # it watches the parent's functions and publishes to the parent's topic
    topic = synthesized.logical_id(synthesized.stack.monitoring.topic)
    passed = set().union(*(refs(v) for v in monitoring.parameters.values()))
    assert topic in passed
    assert {synthesized.logical_id(f) for f in synthesized.stack.functions.functions.values()} <= passed


def test_the_alarm_topic_output_is_the_parents_topic(synthesized):
    topic = synthesized.logical_id(synthesized.stack.monitoring.topic)
    assert synthesized.resources[topic]["Type"] == "AWS::SNS::Topic"
    assert synthesized.template_json["Outputs"]["AlarmTopicArn"]["Value"] == {"Ref": topic}


def test_the_dashboard_shows_the_rest_firewall(synthesized):
    (dashboard,) = synthesized.monitoring.of_type("AWS::CloudWatch::Dashboard").values()
    body = _joined_with_refs(dashboard["Properties"]["DashboardBody"])
    assert "AWS/WAFV2" in body and '"WebACL","Kefu-rest"' in body
    for rule in waf.WAF_RULES:
        assert f'"Rule","{rule}"' in body, rule
