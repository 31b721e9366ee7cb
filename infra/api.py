"""The REST API for integrators: Lambda proxy to ``schema.REST_FUNCTION``, API keys, AWS WAF (waf.py)."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, Duration, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct, IDependable
from kefu import schema

from infra.waf import RestWebAcl

THROTTLE_RATE_LIMIT = 100  # per-key steady rate (requests per second)
THROTTLE_BURST_LIMIT = 200
STAGE_RATE_LIMIT = 500
STAGE_BURST_LIMIT = 1000
MONTHLY_QUOTA = 5_000_000


def usage_plan_name() -> str:
    """The integrators' usage plan, found by this name by the api function when it issues keys."""
    return f"{Aws.STACK_NAME}-integrators"


class RestApi(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler: lambda_.IFunction,
        logging_ready: IDependable | None = None,
        key: kms.IKey | None = None,
    ) -> None:
        """``key`` encrypts the access log group and the web ACL's log group (the stack key)."""
        super().__init__(scope, construct_id)

        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=logs.RetentionDays.ONE_MONTH, encryption_key=key)
        self.api = apigw.RestApi(
            self,
            "Api",
            description=f"kefu REST API ({schema.REST_FUNCTION} function, API keys)",
            cloud_watch_role=False,  # the account-level role is managed by ApiGatewayLogging
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # Browser preflights (the widget mints visitor tokens here) carry no API key:
            # OPTIONS is answered by a MOCK integration without key or Lambda.
            default_cors_preflight_options=apigw.CorsOptions(
                allow_origins=self.node.try_get_context("kefu:corsOrigins") or apigw.Cors.ALL_ORIGINS,
                allow_methods=apigw.Cors.ALL_METHODS,
                allow_headers=["Content-Type", "Authorization", "X-Api-Key", "Idempotency-Key"],
                max_age=Duration.hours(1),
            ),
            deploy_options=apigw.StageOptions(
                stage_name=schema.REST_STAGE,
                access_log_destination=apigw.LogGroupLogDestination(self.access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                metrics_enabled=True,
                tracing_enabled=True,
                throttling_rate_limit=STAGE_RATE_LIMIT,
                throttling_burst_limit=STAGE_BURST_LIMIT,
            ),
        )
        # Basic validation at the edge (required query strings / headers when a method
        # declares them); bodies are validated by the handler (pydantic, 422 with locations).
        self.validator = self.api.add_request_validator(
            "Validator", validate_request_parameters=True, validate_request_body=True
        )
        # One invoke permission for the whole API, not two per method: with ~100 methods the per-method
        # permissions alone took 200 of CloudFormation's 500 resources (and fill the function's policy).
        # The function serves every route of this API anyway.
        integration = apigw.LambdaIntegration(handler, proxy=True, scope_permission_to_method=False)
        proxy = self.api.root.add_proxy(any_method=False)
        for resource in (self.api.root, proxy):
            resource.add_method("ANY", integration, api_key_required=True, request_validator=self.validator)
        # the widget and apps call these with a kefu token (or nothing), never with an API key
        for method, path in schema.REST_PUBLIC_ROUTES:
            self.api.root.resource_for_path(path).add_method(
                method, integration, api_key_required=False, request_validator=self.validator
            )

        if logging_ready is not None:
            self.api.deployment_stage.node.add_dependency(logging_ready)

        # Keys are issued per workspace by admins (POST /workspaces/{ws}/api-keys): the api function
        # creates them in this plan, so every integrator is throttled by it.
        self.usage_plan = self.api.add_usage_plan(
            "UsagePlan",
            name=usage_plan_name(),
            description="kefu integrators",
            throttle=apigw.ThrottleSettings(rate_limit=THROTTLE_RATE_LIMIT, burst_limit=THROTTLE_BURST_LIMIT),
            quota=apigw.QuotaSettings(limit=MONTHLY_QUOTA, period=apigw.Period.MONTH),
        )
        self.usage_plan.add_api_stage(stage=self.api.deployment_stage)

        Validations.of(self.api).acknowledge(
            Acknowledgment(
                id="AwsSolutions-APIG4",
                reason=(
                    "Every method but the CORS preflight (a MOCK answer) requires an API key "
                    "(usage plan), and the api function verifies the caller's kefu bearer token "
                    "itself; a gateway authorizer would check the same token twice."
                ),
            ),
            Acknowledgment(
                id="AwsSolutions-COG4",
                reason="Integrators authenticate with API keys and kefu tokens, not a Cognito user pool.",
            ),
        )
        Validations.of(self.api.deployment_stage).acknowledge(
            Acknowledgment(
                id="NIST.800.53.R5-APIGWCacheEnabledAndEncrypted",
                reason=(
                    "No stage cache: every response depends on the caller's token or API key and most hold a "
                    "workspace's private data, so a cache keyed on the path could serve one caller's data to "
                    "another; a cache cluster is also billed by the hour."
                ),
            ),
            Acknowledgment(
                id="NIST.800.53.R5-APIGWSSLEnabled",
                reason=(
                    "A stage's client certificate is what API Gateway presents to HTTP backends; this stage's "
                    "only integrations are the Lambda proxy (invoked through IAM) and the CORS preflight's MOCK, "
                    "so no backend would ever see it. Clients reach the stage over HTTPS only."
                ),
            ),
        )
        # AWS WAF on the stage (AwsSolutions-APIG3): a per-address rate rule and the AWS managed
        # common and known-bad-input rule groups, in front of the API keys and the usage plan; its
        # blocked and counted requests are logged (NIST.800.53.R5-WAFv2LoggingEnabled).
        self.web_acl = RestWebAcl(self, "Firewall", key=key)
        self.web_acl_association = self.web_acl.associate("StageAssociation", self.api.deployment_stage.stage_arn)

    @property
    def url(self) -> str:
        return self.api.url
