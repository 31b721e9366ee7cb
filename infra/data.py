"""KMS key and the DynamoDB tables, built from ``kefu.schema.TABLES``.

The stack key also encrypts every CloudWatch Logs log group of the stack (cdk-nag
NIST.800.53.R5-CloudWatchLogGroupEncrypted): its policy lets the CloudWatch Logs service
of this region use it, only for log groups of this account and region (the
``kms:EncryptionContext:aws:logs:arn`` condition, as the CloudWatch Logs guide shows).
Writers (Lambda, API Gateway, OpenSearch, Step Functions, WAF) need no KMS permission:
CloudWatch Logs encrypts and decrypts on their behalf.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct
from kefu import schema

# What CloudWatch Logs does with a log group's key (the guide's Encrypt*, Decrypt*, ReEncrypt*,
# GenerateDataKey*, Describe* for a symmetric key, written out).
LOGS_KEY_ACTIONS = [
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:DescribeKey",
]

BACKUP_PLAN_REASON = (
    "Point-in-time recovery (35 days, to the second) is on and the table is retained when the stack is deleted; "
    "an AWS Backup plan would keep further copies of customers' conversations beyond the workspace's retention "
    "and a customer's erasure (kefu.privacy). An organisation that requires one assigns it by AWS Backup policy."
)

_ATTRIBUTE_TYPES = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}


def _attribute(key: schema.Key) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=key.name, type=_ATTRIBUTE_TYPES[key.type])


class Data(Construct):
    """The customer-managed key (rotated yearly) and one table per schema entry.

    ``tables`` maps the schema table id (e.g. "Conversations") to the Table.
    """

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)

        self.key = kms.Key(
            self,
            "Key",
            description="kefu: encrypts tables, streams, secret, queues, topics and log groups of this stack",
            enable_key_rotation=True,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchLogsOfThisAccountAndRegion",
                principals=[iam.ServicePrincipal(f"logs.{Aws.REGION}.amazonaws.com")],
                actions=LOGS_KEY_ACTIONS,
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": (
                            f"arn:{Aws.PARTITION}:logs:{Aws.REGION}:{Aws.ACCOUNT_ID}:log-group:*"
                        )
                    }
                },
            )
        )
        # personal data masked out of stored messages (kefu.pii): sealed with its own key, so that reading a table
        # (a stream consumer, a backup, an operator with the table key) never yields it; only the API may decrypt
        self.pii_key = kms.Key(
            self,
            "PiiKey",
            description="kefu: seals personal data masked out of customers' messages (per-conversation context)",
            enable_key_rotation=True,
        )

        self.tables: dict[str, dynamodb.Table] = {}
        for spec in schema.TABLES.values():
            table = dynamodb.Table(
                self,
                spec.id,
                partition_key=_attribute(spec.partition_key),
                sort_key=_attribute(spec.sort_key) if spec.sort_key else None,
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
                encryption_key=self.key,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True
                ),
                time_to_live_attribute=spec.ttl_attribute,
                stream=dynamodb.StreamViewType[spec.stream] if spec.stream else None,
            )
            for index in spec.indexes:
                table.add_global_secondary_index(
                    index_name=index.name,
                    partition_key=_attribute(index.partition_key),
                    sort_key=_attribute(index.sort_key) if index.sort_key else None,
                    projection_type=dynamodb.ProjectionType.ALL,
                )
            Validations.of(table).acknowledge(
                Acknowledgment(id="NIST.800.53.R5-DynamoDBInBackupPlan", reason=BACKUP_PLAN_REASON)
            )
            self.tables[spec.id] = table
