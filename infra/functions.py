"""One Lambda function per ``schema.FUNCTIONS`` entry, with least-privilege roles.

Each function gets its own execution role and log group. Permissions are derived from
the spec and nothing else:

- ``reads`` / ``writes``: DynamoDB data actions on the table and on each of its indexes
  by name (no ``index/*``), and the KMS actions DynamoDB needs on the table key, only
  through DynamoDB (``kms:ViaService``). These are written out instead of
  ``Table.grant_read_data`` because those grants add ``index/*`` and ``kms:ReEncrypt*`` /
  ``kms:GenerateDataKey*`` wildcards (cdk-nag AwsSolutions-IAM5) that we do not need.
- ``needs_secret``: read of the token signing key.
- ``manage_connections``: ``execute-api:ManageConnections`` on the stage's @connections.
- ``stream_of``: the table's stream, and an SQS dead-letter queue for records that keep
  failing after bisecting and retries.
- ``sends_to``: ``sqs:SendMessage`` on that queue only (its URL in ``queue.env_var``), and
  the KMS actions a producer of an encrypted queue needs (``kms:GenerateDataKey``,
  ``kms:Decrypt``), only through SQS.
- ``consumes``: an SQS event source mapping (partial batch responses) with the receive
  actions Lambda's poller needs on that queue and ``kms:Decrypt`` through SQS. Written
  out instead of ``SqsEventSource``, whose ``grant_consume_messages`` grants the key
  without the ``kms:ViaService`` condition (and ``GetQueueUrl`` /
  ``ChangeMessageVisibility``, which the poller does not use).
- ``reads_buckets`` / ``writes_buckets``: ``s3:GetObject`` (readers) or ``s3:GetObject`` +
  ``s3:PutObject`` (writers) on that bucket's objects, and ``kms:Decrypt`` (+
  ``kms:GenerateDataKey`` for writers) on the bucket key only through S3; the bucket name
  in ``bucket.env_var``. No ``s3:ListBucket``: objects are read by the key the Knowledge
  table points to. Written out instead of ``Bucket.grant_read`` / ``grant_put``, which add
  ``s3:GetObject*`` / ``s3:List*`` / ``s3:Abort*`` and ``kms:GenerateDataKey*`` wildcards.
- ``schedule``: an EventBridge rule with that schedule expression invokes the function (two
  retries); the function's resource policy allows that rule only.
- ``issues_api_keys``: ``apigateway:GET`` on the usage plans (to find the integrators' plan by
  name, ``KEFU_USAGE_PLAN_NAME``), ``POST`` on API keys and usage plan keys, ``DELETE`` on API keys.
- ``escalations``: ``states:StartExecution`` on the escalation state machine (its ARN in
  ``KEFU_ESCALATION_STATE_MACHINE_ARN``) and ``states:StopExecution`` on its executions.
- ``search``: the HTTP methods of that level (``search.SEARCH_ACTIONS``) on the OpenSearch
  domain and its paths, ``KEFU_OPENSEARCH_URL`` (https://endpoint) and
  ``KEFU_OPENSEARCH_SIGV4=1``; the domain's access policy names the same roles
  (``Search.trust`` with ``search_roles``).
"""

from __future__ import annotations

import jsii
from aws_cdk import Acknowledgment, Aws, Duration, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_opensearchservice as opensearch
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from kefu import schema

from infra import ROOT
from infra.api import usage_plan_name
from infra.layers import ARCHITECTURE, ASSET_EXCLUDES, RUNTIME
from infra.queues import CONSUMER_BATCH_SIZE, CONSUMER_MAX_BATCHING_WINDOW_S, encrypted_queue
from infra.search import SEARCH_ACTIONS

SERVICE_NAME = "kefu"
LOG_RETENTION = logs.RetentionDays.ONE_MONTH

# The same action sets as aws-cdk-lib's Table grants (dynamodb perms.ts).
TABLE_READ_ACTIONS = [
    "dynamodb:BatchGetItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:Query",
    "dynamodb:Scan",
]
TABLE_WRITE_ACTIONS = [
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
]
# Table key use through DynamoDB; CDK's wildcards spelt out.
KMS_READ_ACTIONS = ["kms:Decrypt", "kms:DescribeKey"]
KMS_WRITE_ACTIONS = [
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
]
STREAM_READ_ACTIONS = ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"]
# SQS: a producer; Lambda's poller (the execution role of an SQS event source mapping).
QUEUE_SEND_ACTIONS = ["sqs:SendMessage"]  # SendMessageBatch is authorized by sqs:SendMessage too
QUEUE_CONSUME_ACTIONS = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
# SSE-KMS queue key use: a producer needs a data key (and Decrypt, SQS reuses data keys),
# a consumer only Decrypt.
QUEUE_KEY_SEND_ACTIONS = ["kms:GenerateDataKey", "kms:Decrypt"]
QUEUE_KEY_CONSUME_ACTIONS = ["kms:Decrypt"]
# S3 objects (SSE-KMS with the stack key): readers decrypt, writers also need a data key.
BUCKET_READ_ACTIONS = ["s3:GetObject"]
BUCKET_WRITE_ACTIONS = ["s3:GetObject", "s3:PutObject"]
PII_KEY_ACTIONS = {"seal": ["kms:Encrypt"], "open": ["kms:Encrypt", "kms:Decrypt"]}
BUCKET_KEY_READ_ACTIONS = ["kms:Decrypt"]
BUCKET_KEY_WRITE_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey"]

# Event source mapping of the stream consumers (a schema entry may set its own batch size
# and batching window: ``stream_batch_size`` / ``stream_batching_window_s``).
STREAM_BATCH_SIZE = 100
STREAM_RETRY_ATTEMPTS = 3
STREAM_MAX_BATCHING_WINDOW_S = 1
STREAM_MAX_RECORD_AGE = Duration.days(1)


def check_references() -> None:
    """Every ``search`` is a known access level; the stream settings are what Lambda accepts."""
    for spec in schema.FUNCTIONS:
        if spec.search is not None and spec.search not in SEARCH_ACTIONS:
            raise ValueError(f"{spec.name}: search={spec.search!r}, expected None or one of {sorted(SEARCH_ACTIONS)}")
        if (spec.stream_batch_size is not None or spec.stream_batching_window_s is not None) and not spec.stream_of:
            raise ValueError(f"{spec.name} sets stream batching but consumes no stream")
        if spec.stream_batch_size is not None and not 1 <= spec.stream_batch_size <= 10_000:
            raise ValueError(f"{spec.name}: stream_batch_size must be 1..10000 (DynamoDB streams)")
        if spec.stream_batching_window_s is not None and not 0 <= spec.stream_batching_window_s <= 300:
            raise ValueError(f"{spec.name}: stream_batching_window_s must be 0..300")


def via_service(service: str) -> dict:
    return {"StringEquals": {"kms:ViaService": f"{service}.{Aws.REGION}.amazonaws.com"}}


@jsii.implements(lambda_.IEventSourceDlq)
class QueueDestination:
    """On-failure destination of an event source mapping that adds no grant of its own.

    ``aws_lambda_event_sources.SqsDlq`` grants ``queue.grant_send_messages``, which for a
    KMS-encrypted queue brings ``kms:ReEncrypt*`` / ``kms:GenerateDataKey*`` wildcards;
    ``Functions`` grants exactly what is needed instead.
    """

    def __init__(self, queue: sqs.IQueue) -> None:
        self.queue = queue

    def bind(self, _target, _target_handler) -> lambda_.DlqDestinationConfig:
        return lambda_.DlqDestinationConfig(destination=self.queue.queue_arn)


class Functions(Construct):
    """``functions`` maps the schema function name to its Function; ``search_roles`` maps each
    search access level ("read", "write") to the roles of the functions that have it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        key: kms.IKey,
        tables: dict[str, dynamodb.Table],
        pii_key: kms.IKey | None = None,
        queues: dict[str, sqs.IQueue],
        buckets: dict[str, s3.IBucket],
        search_domain: opensearch.IDomain,
        layers: list[lambda_.ILayerVersion],
        secret: secretsmanager.ISecret,
        callback_url: str,
        manage_connections_arn: str,
        escalation=None,
    ) -> None:
        super().__init__(scope, construct_id)
        check_references()
        self.functions: dict[str, lambda_.Function] = {}
        self.roles: dict[str, iam.Role] = {}
        self.log_groups: dict[str, logs.LogGroup] = {}
        self.dead_letter_queues: dict[str, sqs.Queue] = {}
        self.search_roles: dict[str, list[iam.Role]] = {level: [] for level in SEARCH_ACTIONS}

        for spec in schema.FUNCTIONS:
            role = iam.Role(
                self,
                f"{spec.name}Role",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description=f"kefu {spec.name}: {spec.description}"[:1000],
            )
            log_group = logs.LogGroup(self, f"{spec.name}Logs", retention=LOG_RETENTION, encryption_key=key)
            log_group.grant_write(role)

            environment = {
                "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
                "POWERTOOLS_LOG_LEVEL": "INFO",
                "POWERTOOLS_METRICS_NAMESPACE": SERVICE_NAME,
            }
            for table_id in sorted(set(spec.reads) | set(spec.writes) | set(spec.appends) | set(spec.queries)):
                environment[schema.TABLES[table_id].env_var] = tables[table_id].table_name
            if spec.needs_secret:
                environment[schema.ENV_JWT_SECRET_ID] = secret.secret_arn
            if spec.manage_connections:
                environment[schema.ENV_WS_CALLBACK_URL] = callback_url
            for queue_id in sorted(set(spec.sends_to)):
                environment[schema.QUEUES[queue_id].env_var] = queues[queue_id].queue_url
            for bucket_id in sorted(set(spec.reads_buckets) | set(spec.writes_buckets)):
                environment[schema.BUCKETS[bucket_id].env_var] = buckets[bucket_id].bucket_name
            if spec.search:
                environment[schema.ENV_OPENSEARCH_URL] = f"https://{search_domain.domain_endpoint}"
                environment[schema.ENV_OPENSEARCH_SIGV4] = "1"
            if spec.issues_api_keys:
                environment[schema.ENV_USAGE_PLAN_NAME] = usage_plan_name()
            if spec.name == schema.REST_FUNCTION and self.node.try_get_context("kefu:corsOrigins"):
                origins = self.node.try_get_context("kefu:corsOrigins")
                environment[schema.ENV_CORS_ORIGINS] = ",".join(origins if isinstance(origins, list) else [origins])
            if spec.escalations:
                environment[schema.ENV_ESCALATION_ARN] = escalation.state_machine.state_machine_arn
            if spec.pii:
                environment[schema.ENV_PII_KEY_ID] = pii_key.key_arn
            environment.update(spec.extra_env)

            function = lambda_.Function(
                self,
                spec.name,
                description=f"kefu {spec.name}: {spec.description}"[:256],
                runtime=RUNTIME,
                architecture=ARCHITECTURE,
                code=lambda_.Code.from_asset(str(ROOT / "functions" / spec.name), exclude=ASSET_EXCLUDES),
                handler="handler.handler",
                memory_size=spec.memory_mb,
                timeout=Duration.seconds(spec.timeout_s),
                layers=layers,
                environment=environment,
                role=role,
                log_group=log_group,
                tracing=lambda_.Tracing.ACTIVE,
            )

            self._grant_tables(role, spec, tables, key)
            if spec.needs_secret:
                secret.grant_read(role)
            if spec.manage_connections:
                role.add_to_principal_policy(
                    iam.PolicyStatement(
                        sid="PostToConnections",
                        actions=["execute-api:ManageConnections"],
                        resources=[manage_connections_arn],
                    )
                )
            if spec.stream_of:
                self._consume_stream(spec, function, role, tables[spec.stream_of], key)
            self._grant_send(role, spec, queues, key)
            if spec.consumes:
                self._consume_queue(function, role, queues[spec.consumes], key)
            if spec.schedule:
                # EventBridge invokes it (its resource policy names this rule only); no payload needed
                events.Rule(self, f"{spec.name}Schedule", schedule=events.Schedule.expression(spec.schedule),
                            description=f"kefu {spec.name}: {spec.description}"[:512],
                            targets=[events_targets.LambdaFunction(function, retry_attempts=2)])
            self._grant_buckets(role, spec, buckets, key)
            if spec.pii:
                # only with a workspace and a conversation in the encryption context (adapters/pii_vault.py)
                role.add_to_principal_policy(iam.PolicyStatement(
                    sid="SealPersonalData" if spec.pii == "seal" else "SealAndOpenPersonalData",
                    actions=PII_KEY_ACTIONS[spec.pii], resources=[pii_key.key_arn],
                    conditions={"StringLike": {f"kms:EncryptionContext:{name}": "*" for name in schema.PII_CONTEXT_KEYS}}))
            if spec.issues_api_keys:
                gateway = f"arn:{Aws.PARTITION}:apigateway:{Aws.REGION}::"
                role.add_to_principal_policy(iam.PolicyStatement(
                    sid="FindUsagePlan", actions=["apigateway:GET"], resources=[f"{gateway}/usageplans"]))
                role.add_to_principal_policy(iam.PolicyStatement(
                    sid="IssueApiKeys", actions=["apigateway:POST"],
                    resources=[f"{gateway}/apikeys", f"{gateway}/usageplans/*/keys"]))
                role.add_to_principal_policy(iam.PolicyStatement(
                    sid="RevokeApiKeys", actions=["apigateway:DELETE"], resources=[f"{gateway}/apikeys/*"]))
            if spec.escalations:
                role.add_to_principal_policy(iam.PolicyStatement(
                    sid="StartEscalations", actions=["states:StartExecution"],
                    resources=[escalation.state_machine.state_machine_arn]))
                role.add_to_principal_policy(iam.PolicyStatement(
                    sid="StopEscalations", actions=["states:StopExecution"], resources=[escalation.executions_arn]))
            if spec.search:
                role.add_to_principal_policy(
                    iam.PolicyStatement(
                        sid="Search",
                        actions=SEARCH_ACTIONS[spec.search],
                        resources=[search_domain.domain_arn, f"{search_domain.domain_arn}/*"],
                    )
                )
                self.search_roles[spec.search].append(role)

            self._acknowledge(spec, role, manage_connections_arn, buckets, search_domain, escalation)
            _acknowledge_nist(spec, function, role)
            self.functions[spec.name] = function
            self.roles[spec.name] = role
            self.log_groups[spec.name] = log_group

        Validations.of(self).acknowledge(
            Acknowledgment(
                id="AwsSolutions-L1",
                reason=(
                    "Python 3.13 is deliberate: the dependencies layer is built from cp313 "
                    "manylinux2014_aarch64 wheels and every function shares it; move all "
                    "functions and the layer to a newer runtime together."
                ),
            )
        )

    # ------------------------------------------------------------------ grants

    @staticmethod
    def _grant_tables(role: iam.Role, spec: schema.Function, tables: dict, key: kms.IKey) -> None:
        table_ids = sorted(set(spec.reads) | set(spec.writes))
        # append-only tables (the audit log): PutItem only for appenders, Query only for readers; never
        # UpdateItem, DeleteItem, BatchWriteItem or Scan (kefu.schema.Function.appends / .queries)
        for sid, actions, ids, with_indexes in (("TableAppend", ["dynamodb:PutItem"], spec.appends, False),
                                                ("TableQuery", ["dynamodb:Query"], spec.queries, True)):
            if not ids:
                continue
            resources = []
            for table_id in sorted(set(ids)):
                resources.append(tables[table_id].table_arn)
                if with_indexes:
                    resources.extend(f"{tables[table_id].table_arn}/index/{index.name}"
                                     for index in schema.TABLES[table_id].indexes)
            role.add_to_principal_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources))
        if not table_ids and not spec.appends and not spec.queries:
            return
        writes = set(spec.writes)
        for access, ids in (("Read", [t for t in table_ids if t not in writes]), ("Write", sorted(writes))):
            if not ids:
                continue
            resources: list[str] = []
            for table_id in ids:
                table = tables[table_id]
                resources.append(table.table_arn)
                resources.extend(
                    f"{table.table_arn}/index/{index.name}" for index in schema.TABLES[table_id].indexes
                )
            actions = TABLE_READ_ACTIONS + (TABLE_WRITE_ACTIONS if access == "Write" else [])
            role.add_to_principal_policy(
                iam.PolicyStatement(sid=f"Table{access}", actions=actions, resources=resources)
            )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="TableKey",
                actions=KMS_READ_ACTIONS + (KMS_WRITE_ACTIONS if writes or spec.appends else []),
                resources=[key.key_arn],
                conditions=via_service("dynamodb"),
            )
        )

    @staticmethod
    def _grant_send(role: iam.Role, spec: schema.Function, queues: dict, key: kms.IKey) -> None:
        queue_ids = sorted(set(spec.sends_to))
        if not queue_ids:
            return
        _grant_queues(role, ("SendToQueues", "SendQueueKey"), QUEUE_SEND_ACTIONS, QUEUE_KEY_SEND_ACTIONS,
                      [queues[queue_id] for queue_id in queue_ids], key)

    @staticmethod
    def _grant_buckets(role: iam.Role, spec: schema.Function, buckets: dict, key: kms.IKey) -> None:
        writes = sorted(set(spec.writes_buckets))
        reads = sorted(set(spec.reads_buckets) - set(writes))
        if not reads and not writes:
            return
        for sid, actions, ids in (("ReadBuckets", BUCKET_READ_ACTIONS, reads),
                                  ("WriteBuckets", BUCKET_WRITE_ACTIONS, writes)):
            if ids:
                role.add_to_principal_policy(iam.PolicyStatement(
                    sid=sid, actions=actions, resources=[buckets[i].arn_for_objects("*") for i in ids]))
        erases = sorted(set(spec.erases_buckets))
        if erases:  # a customer's erasure (kefu.privacy): list their conversations' prefixes, delete the objects
            role.add_to_principal_policy(iam.PolicyStatement(
                sid="EraseBucketObjects", actions=["s3:DeleteObject"],
                resources=[buckets[i].arn_for_objects("*") for i in erases]))
            role.add_to_principal_policy(iam.PolicyStatement(
                sid="EraseBucketList", actions=["s3:ListBucket"], resources=[buckets[i].bucket_arn for i in erases]))
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="BucketKey",
                actions=BUCKET_KEY_WRITE_ACTIONS if writes else BUCKET_KEY_READ_ACTIONS,
                resources=[key.key_arn],
                conditions=via_service("s3"),
            )
        )

    @staticmethod
    def _consume_queue(function: lambda_.Function, role: iam.Role, queue: sqs.IQueue, key: kms.IKey) -> None:
        _grant_queues(role, ("ConsumeQueue", "ConsumeQueueKey"), QUEUE_CONSUME_ACTIONS, QUEUE_KEY_CONSUME_ACTIONS,
                      [queue], key)
        # Retries and the dead-letter queue are the queue's own (redrive policy, queues.py).
        function.add_event_source_mapping(
            "QueueMapping",
            event_source_arn=queue.queue_arn,
            batch_size=CONSUMER_BATCH_SIZE,
            max_batching_window=Duration.seconds(CONSUMER_MAX_BATCHING_WINDOW_S),
            report_batch_item_failures=True,
        )

    def _consume_stream(
        self,
        spec: schema.Function,
        function: lambda_.Function,
        role: iam.Role,
        table: dynamodb.Table,
        key: kms.IKey,
    ) -> None:
        if table.table_stream_arn is None:
            raise ValueError(f"{spec.name} consumes the stream of {spec.stream_of}, which has none in schema.py")
        dlq = encrypted_queue(self, f"{spec.name}Dlq", key, Duration.days(14))
        Validations.of(dlq).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SQS3",
                reason=(
                    f"This queue is itself the dead-letter destination of {spec.name}'s "
                    "stream event source mapping; records land here for inspection and replay."
                ),
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(sid="ReadStream", actions=STREAM_READ_ACTIONS, resources=[table.table_stream_arn])
        )
        role.add_to_principal_policy(
            # ListStreams supports no resource-level permission.
            iam.PolicyStatement(sid="ListStreams", actions=["dynamodb:ListStreams"], resources=["*"])
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="StreamKey",
                actions=["kms:Decrypt"],
                resources=[key.key_arn],
                conditions={
                    "StringEquals": {
                        "kms:ViaService": [
                            f"dynamodb.{Aws.REGION}.amazonaws.com",
                            f"streams.dynamodb.{Aws.REGION}.amazonaws.com",
                        ]
                    }
                },
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="SendToDlq",
                actions=["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"],
                resources=[dlq.queue_arn],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="DlqKey",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[key.key_arn],
                conditions=via_service("sqs"),
            )
        )
        function.add_event_source_mapping(
            "StreamMapping",
            event_source_arn=table.table_stream_arn,
            starting_position=lambda_.StartingPosition.TRIM_HORIZON,
            # Lambda also caps a batch at the 6 MB invocation payload, whatever the size.
            batch_size=spec.stream_batch_size or STREAM_BATCH_SIZE,
            max_batching_window=Duration.seconds(
                STREAM_MAX_BATCHING_WINDOW_S if spec.stream_batching_window_s is None else spec.stream_batching_window_s
            ),
            bisect_batch_on_error=True,
            retry_attempts=STREAM_RETRY_ATTEMPTS,
            max_record_age=STREAM_MAX_RECORD_AGE,
            report_batch_item_failures=True,
            on_failure=QueueDestination(dlq),
        )
        self.dead_letter_queues[spec.name] = dlq

    # --------------------------------------------------------- acknowledgments

    @staticmethod
    def _acknowledge(spec: schema.Function, role: iam.Role, manage_connections_arn: str,
                     buckets: dict, search_domain: opensearch.IDomain, escalation=None) -> None:
        wildcard_reasons = [
            "X-Ray PutTraceSegments/PutTelemetryRecords (active tracing) support no resource-level permissions"
        ]
        if spec.stream_of:
            wildcard_reasons.append(
                "dynamodb:ListStreams, which the stream event source mapping needs, supports none either"
            )
        Validations.of(role).acknowledge(
            Acknowledgment(id="AwsSolutions-IAM5[Resource::*]", reason="; ".join(wildcard_reasons) + ".")
        )
        if spec.manage_connections:
            Validations.of(role).acknowledge(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{nag_resource(role, manage_connections_arn)}]",
                    reason=(
                        "Connection ids exist only at run time: the grant is @connections "
                        f"(PostToConnection, GetConnection, DeleteConnection) on the {schema.WS_STAGE} stage "
                        "of this one WebSocket API."
                    ),
                )
            )
        writes = set(spec.writes_buckets)
        for bucket_id in sorted(set(spec.reads_buckets) | writes):
            objects = nag_resource(role, buckets[bucket_id].arn_for_objects("*"))
            granted = "GetObject and PutObject" if bucket_id in writes else "GetObject only"
            Validations.of(role).acknowledge(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{objects}]",
                    reason=(
                        f"Objects of the {bucket_id} bucket are keyed at run time (by "
                        f"{schema.BUCKETS[bucket_id].keyed_by}); {granted} on this one bucket's objects, no List."
                    ),
                )
            )
        if spec.issues_api_keys:
            gateway = f"arn:{Aws.PARTITION}:apigateway:{Aws.REGION}::"
            for resource in (f"{gateway}/usageplans/*/keys", f"{gateway}/apikeys/*"):
                Validations.of(role).acknowledge(
                    Acknowledgment(
                        id=f"AwsSolutions-IAM5[Resource::{nag_resource(role, resource)}]",
                        reason=(
                            "API keys are created and revoked at run time (POST /workspaces/{ws}/api-keys); "
                            "the usage plan is found by name (an id reference would be a dependency cycle)."
                        ),
                    )
                )
        if spec.escalations:
            Validations.of(role).acknowledge(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{nag_resource(role, escalation.executions_arn)}]",
                    reason=(
                        "Executions are named at run time (ticket and deadline): StopExecution on the "
                        "executions of the one escalation state machine."
                    ),
                )
            )
        if spec.search:
            paths = nag_resource(role, f"{search_domain.domain_arn}/*")
            Validations.of(role).acknowledge(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{paths}]",
                    reason=(
                        "OpenSearch authorizes HTTP requests by path under the domain ARN (index, _search, "
                        f"_bulk); {spec.search} access grants only the methods "
                        f"{', '.join(a.removeprefix('es:ESHttp').upper() for a in SEARCH_ACTIONS[spec.search])} "
                        "on this one domain."
                    ),
                )
            )


# ---------------------------------------------------------------- NIST 800-53 R5 acknowledgments

INLINE_POLICY_REASON = (
    "The role belongs to this one function and its statements are derived from the function's kefu.schema entry "
    "(least privilege); nothing is shared, so a customer managed policy would add a second resource per role and "
    "nothing reusable, and the api function's statements come close to a managed policy's 6,144-character limit "
    "(inline: 10,240 per role)."
)


def invocation_of(spec: schema.Function) -> str | None:
    """Who invokes this function, how, and where a failure goes (the NIST LambdaDLQ reason).

    None for a function that nothing known invokes: then no acknowledgment is made and the finding shows.
    """
    if spec.route_keys or spec.name in (schema.WS_AUTHORIZER, schema.REST_FUNCTION):
        what = (
            "the WebSocket API's $connect authorizer" if spec.name == schema.WS_AUTHORIZER
            else "the REST API's Lambda proxy" if spec.name == schema.REST_FUNCTION
            else f"the WebSocket route(s) {', '.join(spec.route_keys)}"
        )
        return f"API Gateway invokes it synchronously ({what}): the caller gets the error"
    if spec.stream_of:
        return (
            f"its event source mapping on the {spec.stream_of} stream invokes it synchronously; records that keep "
            f"failing after bisecting and {STREAM_RETRY_ATTEMPTS} retries go to the mapping's own SQS on-failure "
            "destination (KMS, alarmed)"
        )
    if spec.consumes:
        return (
            f"its SQS event source mapping on the {spec.consumes} queue invokes it synchronously; the queue's "
            "redrive policy moves a message that keeps failing to the queue's dead-letter queue (KMS, alarmed)"
        )
    if spec.schedule:
        return (
            f"only its EventBridge schedule ({spec.schedule}) invokes it, asynchronously; the event is a tick with "
            "no data, so a dead-letter copy would hold nothing to replay: a failure is retried by Lambda, raises the "
            "function's Errors alarm, and the next run does the work again"
        )
    return None


def _acknowledge_nist(spec: schema.Function, function: lambda_.Function, role: iam.Role) -> None:
    """NIST.800.53.R5 findings on each function and its role, with the reason for each (docs/security.md)."""
    acknowledgments = [
        (
            "NIST.800.53.R5-LambdaInsideVPC",
            "Not in a VPC: the stack has no VPC resource; the function reaches only public AWS endpoints (DynamoDB, "
            "SQS, S3, KMS, Secrets Manager, API Gateway, Step Functions, X-Ray, CloudWatch Logs, the OpenSearch "
            "domain's HTTPS endpoint), each over TLS with IAM-signed requests, and the webhook and channel functions "
            "call the internet; a VPC would need NAT gateways or an interface endpoint per service and zone.",
        ),
        (
            "NIST.800.53.R5-LambdaConcurrency",
            "No reserved concurrency: a reservation caps the function (a throttled frame or request is an error "
            "to a customer) and is carved out of the account's regional pool, of which Lambda keeps 100 unreserved "
            "(an account at a low limit cannot reserve any). "
            "Load is bounded upstream (WebSocket and REST stage throttling, WAF's per-address rate, the usage plan, "
            "per-connection limits, stream shards, batch sizes) and a Throttles alarm watches each function.",
        ),
    ]
    how = invocation_of(spec)
    if how is not None:
        acknowledgments.append((
            "NIST.800.53.R5-LambdaDLQ",
            f"A function's dead-letter queue only receives failed asynchronous invocations: {how}.",
        ))
    for rule, reason in acknowledgments:
        Validations.of(function).acknowledge(Acknowledgment(id=rule, reason=reason))
    Validations.of(role).acknowledge(Acknowledgment(id="NIST.800.53.R5-IAMNoInlinePolicy", reason=INLINE_POLICY_REASON))


def nag_resource(scope: Construct, value: str) -> str:
    """A resource string as cdk-nag's IAM5 finding spells it (pseudo parameters and
    references written ``<AWS::Region>`` / ``<LogicalId>`` / ``<LogicalId.Attr>``)."""
    resolved = Stack.of(scope).resolve(value)

    def render(part) -> str:
        if isinstance(part, str):
            return part
        if isinstance(part, dict) and "Ref" in part:
            return f"<{part['Ref']}>"
        if isinstance(part, dict) and "Fn::GetAtt" in part:
            return "<" + ".".join(part["Fn::GetAtt"]) + ">"
        if isinstance(part, dict) and "Fn::Join" in part:
            separator, parts = part["Fn::Join"]
            return separator.join(render(p) for p in parts)
        raise ValueError(f"cannot render {part!r}")

    return render(resolved)


def _grant_queues(role: iam.Role, sids: tuple[str, str], actions: list[str], key_actions: list[str],
                  queues: list[sqs.IQueue], key: kms.IKey) -> None:
    """The queue actions on these queues only, and their key only through SQS."""
    queue_sid, key_sid = sids
    role.add_to_principal_policy(
        iam.PolicyStatement(sid=queue_sid, actions=actions, resources=[q.queue_arn for q in queues]))
    role.add_to_principal_policy(
        iam.PolicyStatement(sid=key_sid, actions=key_actions, resources=[key.key_arn], conditions=via_service("sqs")))
