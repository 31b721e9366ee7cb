"""Ticket escalation state machine (Step Functions, direct DynamoDB integration).

Input: ``{"waitSeconds": <int>, "pk": "<conversation pk>", "sk": "META"}``.
Flow: Wait(waitSeconds) -> GetItem(Conversations) -> Choice: the item is still there ->
Escalate (a Pass placeholder, extended later for ticket escalation), else Done.
Only direct service integrations, so the local Step Functions engine runs it too.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, Duration, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct


class Escalation(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, conversations: dynamodb.ITable, key: kms.IKey
    ) -> None:
        super().__init__(scope, construct_id)

        wait = sfn.Wait(self, "WaitForDeadline", time=sfn.WaitTime.seconds_path("$.waitSeconds"))
        get_conversation = tasks.DynamoGetItem(
            self,
            "GetConversation",
            table=conversations,
            key={
                "pk": tasks.DynamoAttributeValue.from_string(sfn.JsonPath.string_at("$.pk")),
                "sk": tasks.DynamoAttributeValue.from_string(sfn.JsonPath.string_at("$.sk")),
            },
            consistent_read=True,
            result_path="$.conversation",
        )
        escalate = sfn.Pass(self, "Escalate", comment="Placeholder: raise the ticket's priority and notify")
        done = sfn.Succeed(self, "Done", comment="The conversation is gone: nothing to escalate")
        decide = (
            sfn.Choice(self, "StillOpen?")
            .when(sfn.Condition.is_present("$.conversation.Item"), escalate)
            .otherwise(done)
        )

        self.log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.ONE_MONTH)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            comment="kefu ticket escalation",
            definition_body=sfn.DefinitionBody.from_chainable(wait.next(get_conversation).next(decide)),
            state_machine_type=sfn.StateMachineType.STANDARD,
            timeout=Duration.days(30),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False
            ),
        )
        # The Conversations table is encrypted with the stack key.
        self.state_machine.add_to_role_policy(
            iam.PolicyStatement(
                sid="TableKey",
                actions=["kms:Decrypt", "kms:DescribeKey"],
                resources=[key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"dynamodb.{Aws.REGION}.amazonaws.com"}},
            )
        )
        Validations.of(self.state_machine.role).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason=(
                    "Step Functions log delivery (logs:CreateLogDelivery, ...) and X-Ray "
                    "(xray:PutTraceSegments, ...) support no resource-level permissions."
                ),
            )
        )
