"""The WebSocket API: routes from ``schema.WS_ROUTES``, token authorizer on $connect.

Built in two steps because the functions need the stage's callback URL in their
environment while the routes need the functions: ``Realtime`` creates the API and its
stage, ``add_routes`` wires the functions in afterwards.
"""

from __future__ import annotations

import json

import jsii
from aws_cdk import Acknowledgment, Stack, Validations
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct, IDependable
from kefu import schema

from infra.context import context_int

# Routes whose integration response is not sent back to the client (API Gateway rule).
NO_RESPONSE_ROUTES = ("$connect", "$disconnect")
AUTHORIZER_IDENTITY_SOURCE = "route.request.querystring.token"

# The stage's default route throttling (every route: $connect, $disconnect and each message
# frame), steady requests per second and burst, across all clients; context
# kefu:wsRateLimit / kefu:wsBurstLimit change them. WAF cannot be associated with
# WebSocket APIs: this, the account's API Gateway quota and the application's own
# per-connection limits are what hold back a flood of connections or frames.
THROTTLE_RATE_LIMIT = 500
THROTTLE_BURST_LIMIT = 1000
THROTTLE_MAX = 1_000_000  # sanity bound on the context values (the account quota is far lower)

ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "extendedRequestId": "$context.extendedRequestId",
        "requestTime": "$context.requestTimeEpoch",
        "eventType": "$context.eventType",
        "routeKey": "$context.routeKey",
        "connectionId": "$context.connectionId",
        "status": "$context.status",
        "sourceIp": "$context.identity.sourceIp",
        "error": "$context.error.message",
        "authorizerError": "$context.authorizer.error",
        "integrationError": "$context.integrationErrorMessage",
        "integrationLatency": "$context.integrationLatency",
    }
)


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(ACCESS_LOG_FORMAT)


def route_construct_id(route_key: str) -> str:
    """A readable construct id for a route key ("$connect" -> "Connect")."""
    return "".join(part.capitalize() for part in route_key.lstrip("$").split("_")) or "Route"


class Realtime(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, logging_ready: IDependable | None = None,
                 key: kms.IKey | None = None) -> None:
        """``key`` encrypts the access log group (the stack key)."""
        super().__init__(scope, construct_id)

        self.api = apigwv2.WebSocketApi(
            self,
            "Api",
            description="kefu realtime API for customers and agents",
            route_selection_expression=schema.WS_ROUTE_SELECTION_EXPRESSION,
        )

        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=logs.RetentionDays.ONE_MONTH, encryption_key=key)
        self.rate_limit = context_int(self, "kefu:wsRateLimit", THROTTLE_RATE_LIMIT, minimum=1, maximum=THROTTLE_MAX)
        self.burst_limit = context_int(
            self, "kefu:wsBurstLimit", THROTTLE_BURST_LIMIT, minimum=1, maximum=THROTTLE_MAX
        )
        self.stage = apigwv2.WebSocketStage(
            self,
            "Stage",
            web_socket_api=self.api,
            stage_name=schema.WS_STAGE,
            auto_deploy=True,
            access_log_settings=_AccessLogSettings(self.access_logs),
            throttle=apigwv2.ThrottleSettings(rate_limit=self.rate_limit, burst_limit=self.burst_limit),
            detailed_metrics_enabled=True,
        )
        if logging_ready is not None:
            # Access logging needs the account's API Gateway CloudWatch role first.
            self.stage.node.add_dependency(logging_ready)

        self.routes: dict[str, apigwv2.WebSocketRoute] = {}

    @property
    def callback_url(self) -> str:
        """https://{apiId}.execute-api.{region}.amazonaws.com/{stage} (the @connections endpoint)."""
        return self.stage.callback_url

    def manage_connections_arn(self) -> str:
        """execute-api ARN of every @connections call on this stage, any method, any connection."""
        return Stack.of(self).format_arn(
            service="execute-api",
            resource=self.api.api_id,
            resource_name=f"{schema.WS_STAGE}/*/@connections/*",
        )

    def add_routes(self, functions: dict[str, lambda_.IFunction]) -> None:
        """One route per ``schema.WS_ROUTES`` key, integrated with its function."""
        self.authorizer = authorizers.WebSocketLambdaAuthorizer(
            "TokenAuthorizer",
            functions[schema.WS_AUTHORIZER],
            identity_source=[AUTHORIZER_IDENTITY_SOURCE],
        )
        for route_key, function_name in schema.WS_ROUTES.items():
            name = route_construct_id(route_key)
            route = self.api.add_route(
                route_key,
                integration=integrations.WebSocketLambdaIntegration(
                    f"{name}Integration", functions[function_name]
                ),
                authorizer=self.authorizer if route_key == "$connect" else None,
                return_response=route_key not in NO_RESPONSE_ROUTES,
            )
            self.routes[route_key] = route
            if route_key != "$connect":
                Validations.of(route).acknowledge(
                    Acknowledgment(
                        id="AwsSolutions-APIG4",
                        reason=(
                            f"WebSocket route {route_key}: API Gateway only runs authorizers on "
                            "$connect; every later frame rides the connection that the token "
                            "authorizer admitted."
                        ),
                    ),
                )
