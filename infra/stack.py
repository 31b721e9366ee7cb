"""KefuStack: every construct of the production architecture, wired from kefu.schema."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct
from kefu import schema

from infra.api import RestApi
from infra.data import Data
from infra.escalation import Escalation
from infra.functions import Functions
from infra.layers import Layers
from infra.observability import ApiGatewayLogging, Monitoring
from infra.queues import Queues
from infra.realtime import Realtime
from infra.search import Search
from infra.secrets import Secrets
from infra.storage import Storage
from infra.web import Web


class KefuStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)

        self.data = Data(self, "Data")
        self.secrets = Secrets(self, "Secrets", key=self.data.key)
        self.queues = Queues(self, "Queues", key=self.data.key)
        self.layers = Layers(self, "Layers")
        self.api_gateway_logging = ApiGatewayLogging(self, "ApiGatewayLogging")
        # Before the functions: their environment names the buckets and the domain endpoint.
        self.web = Web(self, "Web", key=self.data.key)  # and the access-log bucket
        self.storage = Storage(self, "Storage", key=self.data.key, log_bucket=self.web.log_bucket)
        self.search = Search(self, "Search", key=self.data.key)

        # Before the functions: ticket changes start and stop its runs.
        self.escalation = Escalation(self, "Escalation", tickets=self.data.tables[schema.TICKETS.id], key=self.data.key)

        # API and stage first: the functions need the callback URL, the routes the functions.
        self.realtime = Realtime(self, "Realtime", logging_ready=self.api_gateway_logging, key=self.data.key)
        self.functions = Functions(
            self,
            "Functions",
            key=self.data.key,
            pii_key=self.data.pii_key,
            tables=self.data.tables,
            queues=self.queues.queues,
            buckets=self.storage.buckets,
            search_domain=self.search.domain,
            layers=self.layers.all,
            secret=self.secrets.jwt_signing_key,
            callback_url=self.realtime.callback_url,
            manage_connections_arn=self.realtime.manage_connections_arn(),
            escalation=self.escalation,
        )
        self.realtime.add_routes(self.functions.functions)
        self.search.trust(self.functions.search_roles)

        self.rest = RestApi(
            self,
            "Rest",
            handler=self.functions.functions[schema.REST_FUNCTION],
            logging_ready=self.api_gateway_logging,
            key=self.data.key,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            key=self.data.key,
            functions=self.functions.functions,
            dead_letter_queues={
                **{f"{queue_id}Dlq": dlq for queue_id, dlq in self.queues.dead_letter_queues.items()},
                **{f"{name}StreamDlq": dlq for name, dlq in self.functions.dead_letter_queues.items()},
            },
            web_socket_api_id=self.realtime.api.api_id,
            rest_api=self.rest.api,
            stream_consumers=sorted(self.functions.dead_letter_queues),
            web_acl_name=self.rest.web_acl.name,
        )

        CfnOutput(self, "WebSocketUrl", value=self.realtime.stage.url, description="wss:// endpoint for clients")
        CfnOutput(self, "CallbackUrl", value=self.realtime.callback_url, description="@connections management endpoint")
        CfnOutput(self, "RestUrl", value=self.rest.url, description="REST API base URL")
        CfnOutput(self, "RestUsagePlanId", value=self.rest.usage_plan.usage_plan_id,
                  description="integrators' keys: POST /workspaces/{ws}/api-keys (admins) adds them here")
        CfnOutput(self, "CloudFrontDomain", value=self.web.distribution.distribution_domain_name)
        CfnOutput(self, "WebBucket", value=self.web.bucket.bucket_name)
        CfnOutput(self, "JwtSecretArn", value=self.secrets.jwt_signing_key.secret_arn)
        CfnOutput(self, "SearchEndpoint", value=self.search.domain.domain_endpoint)
        CfnOutput(self, "EscalationStateMachineArn", value=self.escalation.state_machine.state_machine_arn)
        CfnOutput(self, "EscalationAlertTopicArn", value=self.escalation.alert_topic.topic_arn)
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        for table_id, table in self.data.tables.items():
            CfnOutput(self, f"{table_id}TableName", value=table.table_name, description=schema.TABLES[table_id].env_var)
        for queue_id, queue in self.queues.queues.items():
            CfnOutput(self, f"{queue_id}QueueUrl", value=queue.queue_url, description=schema.QUEUES[queue_id].env_var)
        for bucket_id, bucket in self.storage.buckets.items():
            CfnOutput(
                self, f"{bucket_id}BucketName", value=bucket.bucket_name, description=schema.BUCKETS[bucket_id].env_var
            )
