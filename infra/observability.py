"""Alarms, the alarm topic, the dashboard, and API Gateway's account logging role.

The alarms and the dashboard live in a nested stack (``Monitoring.stack``): one alarm per
function, dead-letter queue and stream filled ~55 of the parent stack's 500-resource budget
(CloudFormation's limit per stack; nested stacks have their own). The alarm topic stays in
the parent stack, so that its ARN (the ``AlarmTopicArn`` output, and the subscriptions made
to it) does not change with what the nested stack holds. References to the parent's
resources (function and queue names, API ids, the topic) reach the nested stack as its
parameters, which CDK adds.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, Duration, NestedStack, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from kefu import analytics, schema

from infra.waf import WAF_RULES

PERIOD = Duration.minutes(5)
FUNCTION_ERRORS_THRESHOLD = 5  # errors per 5 minutes, 2 periods in a row
FUNCTION_THROTTLES_THRESHOLD = 1  # any throttle means lost or delayed work
WS_SERVER_ERRORS_THRESHOLD = 10  # IntegrationError + ExecutionError per 5 minutes
REST_5XX_THRESHOLD = 10
DLQ_MESSAGES_THRESHOLD = 1  # any message in a dead-letter queue is work that was given up on
# the service (EMF metrics of kefu.analytics, dimension service)
QUEUE_WAIT_P90_THRESHOLD_S = 300  # customers waiting 5 minutes or more, 3 periods in a row
HANDOFF_RATE_THRESHOLD = 0.6  # the bot hands over most of its conversations (a KB or model problem)
HANDOFF_MIN_BOT_CONVERSATIONS = 20  # per 15 minutes, before the rate means anything
SLA_BREACHES_THRESHOLD = 1  # any ticket escalated for a missed deadline
ITERATOR_AGE_THRESHOLD_MS = 60_000  # a stream consumer a minute behind (analytics, search index, escalations)


class ApiGatewayLogging(Construct):
    """The account-level CloudWatch role of API Gateway, needed by stage logging.

    Own role with an inline policy instead of ``cloud_watch_role=True`` (which attaches
    the AWS managed AmazonAPIGatewayPushToCloudWatchLogs policy, cdk-nag IAM4). Stages
    that log must depend on this construct.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
            description="API Gateway (account setting): writes execution and access logs to CloudWatch Logs",
            inline_policies={
                "PushToCloudWatchLogs": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            actions=[
                                "logs:CreateLogGroup",
                                "logs:CreateLogStream",
                                "logs:DescribeLogGroups",
                                "logs:DescribeLogStreams",
                                "logs:PutLogEvents",
                                "logs:GetLogEvents",
                                "logs:FilterLogEvents",
                            ],
                            resources=[
                                f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*",
                            ],
                        )
                    ]
                )
            },
        )
        Validations.of(self.role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:*]",
                reason=(
                    "The API Gateway CloudWatch role is one per account and region: API Gateway "
                    "creates the API-Gateway-Execution-Logs_{apiId}/{stage} groups itself, so the "
                    "role needs every log group of this account and region (what the AWS managed "
                    "AmazonAPIGatewayPushToCloudWatchLogs policy grants, minus other regions)."
                ),
            ),
            Acknowledgment(
                id="NIST.800.53.R5-IAMNoInlinePolicy",
                reason=(
                    "Inline on purpose: the alternative is the AWS managed AmazonAPIGatewayPushToCloudWatchLogs "
                    "policy (AwsSolutions-IAM4, every region); the role serves only API Gateway's account setting."
                ),
            ),
        )
        self.account = apigw.CfnAccount(self, "Account", cloud_watch_role_arn=self.role.role_arn)


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.Key,
        functions: dict[str, lambda_.Function],
        dead_letter_queues: dict[str, sqs.IQueue],
        web_socket_api_id: str,
        rest_api: apigw.RestApi,
        stream_consumers: list[str] = (),
        web_acl_name: str | None = None,
    ) -> None:
        super().__init__(scope, construct_id)

        self.topic = sns.Topic(self, "Alarms", display_name="kefu alarms", master_key=key, enforce_ssl=True)
        # CloudWatch publishes to the encrypted topic with the stack key.
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToUseTheKey",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        action = cw_actions.SnsAction(self.topic)
        self.stack = NestedStack(
            self, "Stack", description="kefu monitoring: CloudWatch alarms (to the parent's alarm topic) and dashboard"
        )
        self.alarms: list[cloudwatch.Alarm] = []

        def alarm(alarm_id: str, metric: cloudwatch.IMetric, threshold: float, periods: int, description: str) -> None:
            created = cloudwatch.Alarm(
                self.stack,
                alarm_id,
                metric=metric,
                threshold=threshold,
                evaluation_periods=periods,
                datapoints_to_alarm=periods,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=description,
            )
            created.add_alarm_action(action)
            created.add_ok_action(action)
            self.alarms.append(created)

        for name, function in functions.items():
            alarm(
                f"{name}Errors",
                function.metric_errors(period=PERIOD, statistic="Sum"),
                FUNCTION_ERRORS_THRESHOLD,
                2,
                f"kefu {name}: {FUNCTION_ERRORS_THRESHOLD}+ errors in each of two 5-minute periods",
            )
            alarm(
                f"{name}Throttles",
                function.metric_throttles(period=PERIOD, statistic="Sum"),
                FUNCTION_THROTTLES_THRESHOLD,
                1,
                f"kefu {name}: throttled invocations (concurrency exhausted)",
            )

        for name, dlq in dead_letter_queues.items():
            alarm(
                f"{name}Messages",
                dlq.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum"),
                DLQ_MESSAGES_THRESHOLD,
                1,
                f"kefu {name}: messages in the dead-letter queue, work that failed every retry "
                "(inspect, fix, then redrive or purge)",
            )

        ws_dimensions = {"ApiId": web_socket_api_id, "Stage": schema.WS_STAGE}
        ws_server_errors = cloudwatch.MathExpression(
            expression="FILL(integration, 0) + FILL(execution, 0)",
            using_metrics={
                "integration": cloudwatch.Metric(
                    namespace="AWS/ApiGateway", metric_name="IntegrationError",
                    dimensions_map=ws_dimensions, period=PERIOD, statistic="Sum",
                ),
                "execution": cloudwatch.Metric(
                    namespace="AWS/ApiGateway", metric_name="ExecutionError",
                    dimensions_map=ws_dimensions, period=PERIOD, statistic="Sum",
                ),
            },
            label="WebSocket server errors",
            period=PERIOD,
        )
        alarm(
            "WebSocketServerErrors",
            ws_server_errors,
            WS_SERVER_ERRORS_THRESHOLD,
            1,
            "kefu WebSocket API: integration or execution errors (server side)",
        )
        alarm(
            "Rest5xx",
            rest_api.metric_server_error(period=PERIOD, statistic="Sum"),
            REST_5XX_THRESHOLD,
            1,
            "kefu REST API: 5XX responses",
        )

        for name in stream_consumers:
            alarm(
                f"{name}IteratorAge",
                functions[name].metric("IteratorAge", period=PERIOD, statistic="Maximum"),
                ITERATOR_AGE_THRESHOLD_MS,
                2,
                f"kefu {name}: its stream is read {ITERATOR_AGE_THRESHOLD_MS // 1000}+ s late (throttled, failing or slow)",
            )

        # the service, from the EMF metrics the stream handlers emit (kefu.analytics)
        service = lambda name, statistic, period=PERIOD: cloudwatch.Metric(  # noqa: E731
            namespace=analytics.EMF_NAMESPACE, metric_name=name, dimensions_map={"service": "kefu"},
            period=period, statistic=statistic,
        )
        alarm(
            "QueueWaitP90",
            service("QueueWaitSeconds", "p90"),
            QUEUE_WAIT_P90_THRESHOLD_S,
            3,
            f"kefu: 90% of customers wait up to {QUEUE_WAIT_P90_THRESHOLD_S} s or longer for an agent (15 minutes)",
        )
        quarter = Duration.minutes(15)
        alarm(
            "HandoffRate",
            cloudwatch.MathExpression(
                expression=f"IF(bot >= {HANDOFF_MIN_BOT_CONVERSATIONS}, handoffs / bot, 0)",
                using_metrics={"bot": service(analytics.EMF_BOT_CONVERSATIONS, "Sum", quarter),
                               "handoffs": service(analytics.EMF_COUNTS["handoff"], "Sum", quarter)},
                label="bot handoff rate", period=quarter,
            ),
            HANDOFF_RATE_THRESHOLD,
            1,
            f"kefu: the bot hands over {HANDOFF_RATE_THRESHOLD:.0%}+ of its conversations (15 minutes, "
            f"{HANDOFF_MIN_BOT_CONVERSATIONS}+ of them): check the knowledge base and the model",
        )
        alarm(
            "SlaBreaches",
            service(analytics.EMF_SLA_BREACHES, "Sum"),
            SLA_BREACHES_THRESHOLD,
            1,
            "kefu: tickets escalated because an SLA deadline passed",
        )

        self.dashboard = cloudwatch.Dashboard(self.stack, "Dashboard", default_interval=Duration.hours(3))
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Customers: wait and first response (s)",
                left=[service("QueueWaitSeconds", "p50"), service("QueueWaitSeconds", "p90"),
                      service("FirstResponseSeconds", "p90")],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Conversations, bot and handoffs",
                left=[service("Conversations", "Sum"), service(analytics.EMF_BOT_CONVERSATIONS, "Sum"),
                      service("BotHandoffs", "Sum")],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Handle time (s), CSAT and SLA breaches",
                left=[service("HandleSeconds", "Average")],
                right=[service("CsatScore", "Average"), service(analytics.EMF_SLA_BREACHES, "Sum")],
                width=8,
            ),
        )
        ws_metric = lambda name: cloudwatch.Metric(  # noqa: E731
            namespace="AWS/ApiGateway", metric_name=name, dimensions_map=ws_dimensions, period=PERIOD, statistic="Sum"
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="WebSocket traffic",
                left=[ws_metric("ConnectCount"), ws_metric("MessageCount")],
                right=[ws_metric("ClientError"), ws_metric("IntegrationError"), ws_metric("ExecutionError")],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="REST API",
                left=[rest_api.metric_count(period=PERIOD)],
                right=[rest_api.metric_client_error(period=PERIOD), rest_api.metric_server_error(period=PERIOD)],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Lambda invocations",
                left=[f.metric_invocations(period=PERIOD, label=n) for n, f in functions.items()],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Lambda errors",
                left=[f.metric_errors(period=PERIOD, label=n) for n, f in functions.items()],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Lambda duration p99",
                left=[f.metric_duration(period=PERIOD, statistic="p99", label=n) for n, f in functions.items()],
                width=8,
            ),
        )
        if dead_letter_queues:
            self.dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title="Dead-letter queues: visible messages",
                    left=[
                        q.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum", label=n)
                        for n, q in dead_letter_queues.items()
                    ],
                    width=24,
                ),
            )
        if web_acl_name:
            waf = lambda name, rule, label: cloudwatch.Metric(  # noqa: E731
                namespace="AWS/WAFV2", metric_name=name, period=PERIOD, statistic="Sum", label=label,
                dimensions_map={"WebACL": web_acl_name, "Region": Aws.REGION, "Rule": rule},
            )
            self.dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title="REST API firewall (WAF): requests",
                    left=[waf("AllowedRequests", "ALL", "allowed"), waf("BlockedRequests", "ALL", "blocked")],
                    right=[waf("BlockedRequests", rule, f"blocked: {rule}") for rule in WAF_RULES],
                    width=24,
                ),
            )
        self.dashboard.add_widgets(cloudwatch.AlarmStatusWidget(alarms=self.alarms, title="Alarms", width=24))
