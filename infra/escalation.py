"""Ticket escalation: the state machine of kefu.escalation (one ASL definition for AWS and the local
stack), its alert topic, and a least-privilege role: read and update the Tickets table's ticket
items, put `ticket.escalated` events on the default bus, publish alerts.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, Duration, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct
from kefu import escalation, schema


class Escalation(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, tickets: dynamodb.ITable, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)

        self.alert_topic = sns.Topic(
            self, "Alerts", display_name="kefu ticket escalation alerts", master_key=key, enforce_ssl=True
        )
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description="kefu ticket escalation: tickets table, default event bus, alert topic",
        )
        role.add_to_policy(iam.PolicyStatement(sid="Tickets", actions=["dynamodb:GetItem", "dynamodb:UpdateItem"],
                                               resources=[tickets.table_arn]))
        role.add_to_policy(iam.PolicyStatement(
            sid="TableKey",
            actions=["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
            resources=[key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": [f"dynamodb.{Aws.REGION}.amazonaws.com",
                                                            f"sns.{Aws.REGION}.amazonaws.com"]}},
        ))
        role.add_to_policy(iam.PolicyStatement(
            sid="Events", actions=["events:PutEvents"],
            resources=[f"arn:{Aws.PARTITION}:events:{Aws.REGION}:{Aws.ACCOUNT_ID}:event-bus/default"],
            conditions={"StringEquals": {"events:source": schema.EVENT_SOURCE_TICKETS}},
        ))
        # written out: Topic.grant_publish on an encrypted topic adds a kms:GenerateDataKey* wildcard
        role.add_to_policy(iam.PolicyStatement(sid="Alerts", actions=["sns:Publish"],
                                               resources=[self.alert_topic.topic_arn]))

        self.log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.ONE_MONTH, encryption_key=key)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment="kefu ticket escalation",
            definition_body=sfn.DefinitionBody.from_string(escalation.definition_json()),
            definition_substitutions={
                escalation.TABLE: tickets.table_name,
                escalation.TOPIC: self.alert_topic.topic_arn,
                escalation.BUS: "default",
            },
            role=role,
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=Duration.days(365),  # SLA chains of low-priority tickets run for weeks
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
        )
        Validations.of(role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason=(
                    "Step Functions log delivery (logs:CreateLogDelivery, ...) and X-Ray "
                    "(xray:PutTraceSegments, ...) support no resource-level permissions."
                ),
            ),
            Acknowledgment(
                id="NIST.800.53.R5-IAMNoInlinePolicy",
                reason=(
                    "The role belongs to this one state machine and its statements name only the Tickets table, "
                    "the default bus (source kefu.tickets) and the alert topic; nothing is shared, so a managed "
                    "policy would add a resource and nothing reusable."
                ),
            ),
        )

    @property
    def executions_arn(self) -> str:
        """Every execution of this machine (StopExecution's resource)."""
        name = self.state_machine.state_machine_name
        return f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{name}:*"
