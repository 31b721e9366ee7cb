"""CloudFormation's hard limits: a stack of at most 500 resources (every REST route must not cost
resources of its own beyond its method), and one API-scoped invoke permission for the REST function."""

from __future__ import annotations

STACK_RESOURCE_LIMIT = 500
# room for the routes and alarms still to come, so that the limit is not found at deploy time. At 446 (116 API
# Gateway methods, a third of them CORS preflights of the bearer routes; 54 alarms): the next large addition
# (issue 8's WAF and throttling) moves Monitoring into a nested stack first.
HEADROOM = 40


def test_the_stack_stays_well_under_cloudformations_resource_limit(synthesized):
    count = len(synthesized.resources)
    assert count <= STACK_RESOURCE_LIMIT - HEADROOM, f"{count} resources: split a nested stack or share resources"


def test_the_rest_api_invokes_its_function_through_one_permission(synthesized):
    rest_apis = list(synthesized.of_type("AWS::ApiGateway::RestApi"))
    assert len(rest_apis) == 1
    api_scoped = [p["Properties"] for p in synthesized.of_type("AWS::Lambda::Permission").values()
                  if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
                  and rest_apis[0] in str(p["Properties"].get("SourceArn"))]
    assert len(api_scoped) == 1, api_scoped
    # any method and stage of this API only, never every API of the account
    assert rest_apis[0] in str(api_scoped[0]["SourceArn"])


def test_the_chat_page_may_be_framed_by_the_widget_and_the_console_may_not(synthesized):
    (distribution,) = synthesized.of_type("AWS::CloudFront::Distribution").values()
    config = distribution["Properties"]["DistributionConfig"]
    managed_security_headers = "67f7725c-6f97-4210-82d7-5512b31e9d03"  # AWS's SecurityHeadersPolicy
    assert config["DefaultCacheBehavior"]["ResponseHeadersPolicyId"] == managed_security_headers
    (chat,) = [b for b in config["CacheBehaviors"] if b["PathPattern"] == "/customer.html"]
    (policy_id,) = chat["ResponseHeadersPolicyId"].values()
    policy = synthesized.resources[policy_id]["Properties"]
    headers = policy["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    assert "FrameOptions" not in headers
    assert headers["ContentSecurityPolicy"]["ContentSecurityPolicy"] == "frame-ancestors *"
    assert headers["StrictTransportSecurity"]["AccessControlMaxAgeSec"] == 365 * 24 * 3600
    assert chat["ViewerProtocolPolicy"] == "redirect-to-https"


def test_service_alarms_watch_the_emf_metrics_and_the_streams(synthesized):
    from kefu import analytics

    alarms = {k: a["Properties"] for k, a in synthesized.of_type("AWS::CloudWatch::Alarm").items()}

    def find(fragment):
        return [p for k, p in alarms.items() if fragment in k]

    (wait,) = find("QueueWaitP90")
    assert wait["MetricName"] == "QueueWaitSeconds" and wait["Namespace"] == analytics.EMF_NAMESPACE
    assert wait["ExtendedStatistic"] == "p90" and wait["Threshold"] == 300 and wait["EvaluationPeriods"] == 3
    (handoff,) = find("HandoffRate")
    expression = next(m for m in handoff["Metrics"] if "Expression" in m)["Expression"]
    assert expression.startswith("IF(bot >= 20") and handoff["Threshold"] == 0.6
    (sla,) = find("SlaBreaches")
    assert sla["MetricName"] == analytics.EMF_SLA_BREACHES and sla["Threshold"] == 1
    ages = find("IteratorAge")
    assert len(ages) >= 3 and all(a["MetricName"] == "IteratorAge" and a["Threshold"] == 60000 for a in ages)
    assert all(a["AlarmActions"] for a in (wait, handoff, sla, *ages))  # to the alarm topic
