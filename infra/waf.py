"""The REST API's AWS WAF v2 web ACL (REGIONAL) and the context values that tune the edge.

The web ACL holds three rules, in this order:

1. ``RatePerIp``: a rate-based rule per source address (``kefu:wafRateLimit`` requests per
   5 minutes, default 2,000); an address over it is blocked until its rate falls again.
   First, so that a flood is stopped before the managed rules look at it.
2. ``KnownBadInputs``: AWSManagedRulesKnownBadInputsRuleSet (Log4j/JNDI lookups, Java
   deserialization, localhost Host headers, ...).
3. ``CommonRuleSet``: AWSManagedRulesCommonRuleSet (OWASP-style: XSS, LFI/RFI, SSRF to the
   instance metadata address, bad bots, size limits), except that ``SizeRestrictions_BODY``
   (bodies over 8 KB) only counts: knowledge-base imports (up to 6 MB) and long articles are
   legitimate large bodies, and the api function limits every body itself.

Every rule and the web ACL publish CloudWatch metrics (namespace ``AWS/WAFV2``, dimension
``WebACL`` = the ACL's name) and keep sampled requests.

The requests a rule blocks or counts are logged (``LoggingConfiguration``; allowed requests are
dropped from the log) to the log group ``aws-waf-logs-<stack>-rest-<id>`` (WAF requires the prefix;
the id, from the stack's id, keeps the name free when a stack of the same name is created again),
encrypted with the stack key, kept a month: a false positive of a managed rule (a 403 the api
function never sees) shows there with the rule that matched. The Authorization, X-Api-Key and
X-Kefu-Step-Up headers, cookies and the query string are redacted from the log. On the first
deployment WAF adds a CloudWatch Logs resource policy that lets its log delivery write to the
group (PutLoggingConfiguration does it, with the deploying role's logs:PutResourcePolicy).

WAF cannot be associated with API Gateway WebSocket APIs (only REST APIs, ALB, AppSync,
Cognito, App Runner, Verified Access and, with a CLOUDFRONT-scope ACL in us-east-1,
CloudFront): the WebSocket API is limited by its stage throttling (``kefu:wsRateLimit`` /
``kefu:wsBurstLimit``, see realtime.py) and the application's own rate limits.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Aws, Fn, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from infra.context import context_int

# requests per source address in any 5-minute window (WAF's evaluation window; 60, 120, 300 or 600 s)
DEFAULT_RATE_LIMIT = 2000
RATE_WINDOW_S = 300
RATE_LIMIT_RANGE = (10, 2_000_000_000)  # what WAF accepts
# Managed rules that only count (label and metric) instead of blocking, with the reason.
COUNT_ONLY_RULES = {
    "AWSManagedRulesCommonRuleSet": {
        "SizeRestrictions_BODY": "knowledge-base imports (up to 6 MB) and long articles are larger than 8 KB",
    },
}
MANAGED_RULE_GROUPS = (  # (rule name, managed rule group), in priority order after the rate rule
    ("KnownBadInputs", "AWSManagedRulesKnownBadInputsRuleSet"),
    ("CommonRuleSet", "AWSManagedRulesCommonRuleSet"),
)
RATE_RULE = "RatePerIp"
# every rule's name, in priority order; also its CloudWatch metric name (dimension Rule)
WAF_RULES = (RATE_RULE, *(name for name, _ in MANAGED_RULE_GROUPS))
# the log: what a rule did (allowed requests are dropped), without credentials or query strings
LOGGED_ACTIONS = ("BLOCK", "COUNT")
REDACTED_HEADERS = ("authorization", "x-api-key", "x-kefu-step-up", "cookie")
LOG_GROUP_PREFIX = "aws-waf-logs-"  # WAF only delivers to log groups named so


def _visibility(metric_name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=metric_name, sampled_requests_enabled=True
    )


class RestWebAcl(Construct):
    """A REGIONAL web ACL, associated with REST API stages by ``associate``."""

    def __init__(self, scope: Construct, construct_id: str, *, key: kms.IKey | None = None) -> None:
        """``key`` encrypts the log group of blocked and counted requests (the stack key)."""
        super().__init__(scope, construct_id)
        self.rate_limit = context_int(
            self, "kefu:wafRateLimit", DEFAULT_RATE_LIMIT, minimum=RATE_LIMIT_RANGE[0], maximum=RATE_LIMIT_RANGE[1]
        )
        # A fixed name (per stack) so that dashboards and alarms can name the WebACL metric dimension.
        self.name = f"{Stack.of(self).stack_name}-rest"

        rules = [
            wafv2.CfnWebACL.RuleProperty(
                name=RATE_RULE,
                priority=0,
                action=wafv2.CfnWebACL.RuleActionProperty(block={}),
                statement=wafv2.CfnWebACL.StatementProperty(
                    rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                        aggregate_key_type="IP", limit=self.rate_limit, evaluation_window_sec=RATE_WINDOW_S
                    )
                ),
                visibility_config=_visibility(RATE_RULE),
            )
        ]
        for priority, (rule_name, group) in enumerate(MANAGED_RULE_GROUPS, start=1):
            overrides = [
                wafv2.CfnWebACL.RuleActionOverrideProperty(
                    name=name, action_to_use=wafv2.CfnWebACL.RuleActionProperty(count={})
                )
                for name in COUNT_ONLY_RULES.get(group, {})
            ]
            rules.append(
                wafv2.CfnWebACL.RuleProperty(
                    name=rule_name,
                    priority=priority,
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS", name=group, rule_action_overrides=overrides or None
                        )
                    ),
                    visibility_config=_visibility(rule_name),
                )
            )

        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            name=self.name,
            description="kefu REST API: per-address rate limit, AWS managed common and known-bad-input rules",
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility("RestWebAcl"),
            rules=rules,
        )
        self.associations: list[wafv2.CfnWebACLAssociation] = []

        # The stack id's UUID part: unique per creation, so a stack deleted (its log group retained) and
        # created again under the same name does not collide with the old group.
        unique = Fn.select(0, Fn.split("-", Fn.select(2, Fn.split("/", Aws.STACK_ID))))
        self.log_group_name = f"{LOG_GROUP_PREFIX}{Stack.of(self).stack_name}-rest-{unique}"
        self.log_group = logs.LogGroup(
            self, "Logs", log_group_name=self.log_group_name, retention=logs.RetentionDays.ONE_MONTH, encryption_key=key
        )
        self.logging = wafv2.CfnLoggingConfiguration(
            self,
            "Logging",
            resource_arn=self.web_acl.attr_arn,
            # the group's ARN without the ":*" that LogGroup.log_group_arn ends with (WAF refuses it)
            log_destination_configs=[
                Stack.of(self).format_arn(
                    service="logs", resource="log-group", resource_name=self.log_group_name,
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
            logging_filter={
                "DefaultBehavior": "DROP",
                "Filters": [
                    {
                        "Behavior": "KEEP",
                        "Requirement": "MEETS_ANY",
                        "Conditions": [{"ActionCondition": {"Action": action}} for action in LOGGED_ACTIONS],
                    }
                ],
            },
            redacted_fields=[
                *(wafv2.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": name})
                  for name in REDACTED_HEADERS),
                wafv2.CfnLoggingConfiguration.FieldToMatchProperty(query_string={}),
            ],
        )
        self.logging.node.add_dependency(self.log_group)

    @property
    def arn(self) -> str:
        return self.web_acl.attr_arn

    def associate(self, association_id: str, resource_arn: str) -> wafv2.CfnWebACLAssociation:
        association = wafv2.CfnWebACLAssociation(
            self, association_id, resource_arn=resource_arn, web_acl_arn=self.web_acl.attr_arn
        )
        self.associations.append(association)
        return association
