"""The ticket escalation state machine, in Amazon States Language: one definition for AWS (CDK
passes it with DefinitionSubstitutions) and for the local stack (moto's Step Functions engine).

Step Functions cannot add durations to timestamps, so the ticket service computes the whole
escalation plan when it starts an execution (``tickets.escalation_input``): for each level the
moment it falls due, the priority and group it moves to and the next deadline. The machine then:

    Next? ─ a step left ─► PickStep ─► WaitUntilDue ─► Escalate ─► Publish ─► Advance ─► Next?
          └ none left ──► WaitUntilFinalDue ─► StillOverdue? ─ yes ─► alert
    Escalate: a conditional DynamoDB update (still open or pending, deadline unchanged); when the
    condition fails the ticket was resolved or its deadline moved (the service then runs a new
    execution): Changed? ends the run. Any other failure is retried, then caught: alert.
    alert: RecordAlert (the ticket's `alert` attribute) ─► NotifyAlert (SNS).

Resolving or closing a ticket stops its execution (the wait ends early); the conditional update
makes a late stop harmless. Only direct service integrations: no Lambda to run locally.
Stdlib only: the CDK app imports this.
"""

from __future__ import annotations

import json

# DefinitionSubstitutions keys
TABLE = "TicketsTable"
TOPIC = "AlertTopic"
BUS = "EventBus"
SOURCE = "kefu.tickets"

_KEY = {"pk": {"S.$": "$.pk"}, "sk": {"S.$": "$.sk"}}
_RETRY = [
    # a failed condition is an answer, not a fault: no retry
    {"ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"], "MaxAttempts": 0},
    {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 2.0},
]


def _dynamodb(action: str, parameters: dict, **state) -> dict:
    return {"Type": "Task", "Resource": f"arn:aws:states:::dynamodb:{action}",
            "Parameters": {"TableName": "${%s}" % TABLE, "Key": _KEY, **parameters}, **state}


def _to_alert(reason: str) -> list[dict]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": reason}]


def definition() -> dict:
    states = {
        "Next?": {
            "Type": "Choice",
            "Choices": [{"Variable": "$.loop.index", "NumericLessThanPath": "$.count", "Next": "PickStep"}],
            "Default": "WaitUntilFinalDue",
        },
        "PickStep": {
            "Type": "Pass",
            "Parameters": {"step.$": "States.ArrayGetItem($.steps, $.loop.index)"},
            "ResultPath": "$.current",
            "Next": "WaitUntilDue",
        },
        "WaitUntilDue": {"Type": "Wait", "TimestampPath": "$.current.step.at", "Next": "Escalate"},
        "Escalate": _dynamodb(
            "updateItem",
            {
                "ConditionExpression": "#status IN (:open, :pending) AND #deadline = :due",
                "UpdateExpression": (
                    "SET escalationLevel = :level, priority = :priority, groupId = :group, "
                    "#deadline = :next, updatedAt = :now, history = list_append(history, :event) "
                    "REMOVE assigneeId, assigneeName"
                ),
                "ExpressionAttributeNames": {"#status": "status", "#deadline": "deadline"},
                "ExpressionAttributeValues": {
                    ":open": {"S": "open"},
                    ":pending": {"S": "pending"},
                    ":due": {"S.$": "$.current.step.at"},
                    ":level": {"N.$": "$.current.step.level"},
                    ":priority": {"S.$": "$.current.step.priority"},
                    ":group": {"S.$": "$.current.step.group"},
                    ":next": {"S.$": "$.current.step.deadline"},
                    ":now": {"S.$": "$$.State.EnteredTime"},
                    ":event": {"L": [{"M": {
                        "type": {"S": "escalated"},
                        "at": {"S.$": "$$.State.EnteredTime"},
                        "by": {"S": "sla"},
                        "level": {"N.$": "$.current.step.level"},
                        "priority": {"S.$": "$.current.step.priority"},
                        "group": {"S.$": "$.current.step.group"},
                        "deadline": {"S.$": "$.current.step.deadline"},
                    }}]},
                },
            },
            ResultPath=None,
            Retry=_RETRY,
            Catch=[
                {"ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"], "ResultPath": None,
                 "Next": "Changed"},
                *_to_alert("StepFailed"),
            ],
            Next="Publish",
        ),
        "Publish": {
            "Type": "Task",
            "Resource": "arn:aws:states:::events:putEvents",
            "Parameters": {"Entries": [{
                "EventBusName": "${%s}" % BUS,
                "Source": SOURCE,
                "DetailType": "ticket.escalated",
                "Detail": {
                    "workspace.$": "$.workspace",
                    "ticketId.$": "$.ticketId",
                    "level.$": "$.current.step.level",
                    "priority.$": "$.current.step.priority",
                    "group.$": "$.current.step.group",
                    "deadline.$": "$.current.step.deadline",
                },
            }]},
            "ResultPath": None,
            "Retry": _RETRY[1:],
            "Catch": _to_alert("StepFailed"),
            "Next": "Advance",
        },
        "Advance": {
            "Type": "Pass",
            "Parameters": {"index.$": "States.MathAdd($.loop.index, 1)"},
            "ResultPath": "$.loop",
            "Next": "Next?",
        },
        "Changed": {"Type": "Succeed", "Comment": "Resolved, closed or rescheduled meanwhile: nothing to do"},
        "WaitUntilFinalDue": {"Type": "Wait", "TimestampPath": "$.finalDue", "Next": "ReadTicket"},
        "ReadTicket": _dynamodb("getItem", {"ConsistentRead": True}, ResultPath="$.ticket",
                                Retry=_RETRY[1:], Catch=_to_alert("StepFailed"), Next="StillOverdue?"),
        "StillOverdue?": {
            "Type": "Choice",
            "Choices": [{
                "And": [
                    {"Variable": "$.ticket.Item.status.S", "IsPresent": True},
                    {"Or": [{"Variable": "$.ticket.Item.status.S", "StringEquals": "open"},
                            {"Variable": "$.ticket.Item.status.S", "StringEquals": "pending"}]},
                    {"Variable": "$.ticket.Item.deadline.S", "StringEqualsPath": "$.finalDue"},
                ],
                "Next": "MaxLevelReached",
            }],
            "Default": "Changed",
        },
        "MaxLevelReached": {
            "Type": "Pass",
            "Parameters": {"reason": "overdue at the highest escalation level", "cause": ""},
            "ResultPath": "$.alert",
            "Next": "RecordAlert",
        },
        "StepFailed": {
            "Type": "Pass",
            "Parameters": {"reason": "an escalation step failed", "cause.$": "$.error.Error"},
            "ResultPath": "$.alert",
            "Next": "RecordAlert",
        },
        "RecordAlert": _dynamodb(
            "updateItem",
            {
                # no list_append here: the alert must land even when the history is what failed
                "UpdateExpression": "SET alert = :alert",
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeValues": {":alert": {"M": {
                    "reason": {"S.$": "$.alert.reason"},
                    "cause": {"S.$": "$.alert.cause"},
                    "at": {"S.$": "$$.State.EnteredTime"},
                    "execution": {"S.$": "$$.Execution.Id"},
                }}},
            },
            ResultPath=None,
            Retry=_RETRY[1:],
            Catch=[{"ErrorEquals": ["States.ALL"], "ResultPath": "$.recordError", "Next": "NotifyAlert"}],
            Next="NotifyAlert",
        ),
        "NotifyAlert": {
            "Type": "Task",
            "Resource": "arn:aws:states:::sns:publish",
            "Parameters": {
                "TopicArn": "${%s}" % TOPIC,
                "Subject": "kefu: ticket escalation alert",
                "Message": {
                    "type": "ticket.alert",
                    "workspace.$": "$.workspace",
                    "ticketId.$": "$.ticketId",
                    "reason.$": "$.alert.reason",
                    "cause.$": "$.alert.cause",
                    "execution.$": "$$.Execution.Id",
                },
            },
            "ResultPath": None,
            "Retry": _RETRY[1:],
            "Next": "Alerted",
        },
        "Alerted": {"Type": "Succeed"},
    }
    return {
        "Comment": "kefu ticket escalation: wait for each SLA deadline, escalate, alert at the top",
        "StartAt": "Next?",
        "States": states,
    }


def definition_json(substitutions: dict[str, str] | None = None) -> str:
    """The definition as JSON; with substitutions, ``${Name}`` placeholders are filled in (what
    CloudFormation's DefinitionSubstitutions do on AWS)."""
    text = json.dumps(definition(), ensure_ascii=False, indent=1)
    for name, value in (substitutions or {}).items():
        text = text.replace("${%s}" % name, value)
    return text
