"""The audit log (Audit table) and agents' step-up enrolments (Directory table), with boto3.

Audit table (kefu.schema.AUDIT): pk "{ws}", sk "{at}#{entryId}"; actorKey "{ws}#{type}:{id}" and actionKey
"{ws}#{action}" for the byActor / byAction indexes; expiresAt (TTL). AuditStore has exactly two operations:
`append` (PutItem with attribute_not_exists: an entry is never overwritten) and `query`. There is no update or
delete here, and the functions' IAM grants allow nothing else (kefu.schema.Function.appends / .queries).

Directory table: pk "{ws}#MFA", sk "{agentId}": the agent's step-up enrolment: `secret` (the TOTP secret,
base32; the table is encrypted with the stack's KMS key; never logged, returned once at enrolment), `lastStep`
(the last accepted time step: replay protection), `failWindow` / `failCount` (failed attempts in the current
fixed window: the rate limit), enrolledAt.
"""

from __future__ import annotations

import os

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .. import audit, schema
from . import cursors
from .attributes import from_item, to_item
from .dynamodb import _host, _region


def _client():
    return boto3.client("dynamodb", region_name=_region(), endpoint_url=_host(),
                        config=Config(retries={"max_attempts": 5, "mode": "standard"}))


def _conditional(error: ClientError) -> bool:
    return error.response["Error"]["Code"] == "ConditionalCheckFailedException"


class AuditStore:
    def __init__(self) -> None:
        self.table = os.environ.get(schema.AUDIT.env_var, schema.AUDIT.local_name)
        self.client = _client()

    def append(self, entry: audit.Entry) -> None:
        item = {
            "pk": entry.workspace, "sk": f"{entry.at}#{entry.id}",
            "actorKey": f"{entry.workspace}#{entry.actor.key()}", "actionKey": f"{entry.workspace}#{entry.action}",
            "entryId": entry.id, "at": entry.at, "action": entry.action, "outcome": entry.outcome,
            "actorType": entry.actor.type, "actorId": entry.actor.id, "actorRole": entry.actor.role,
            "target": entry.target, "sourceIp": entry.source.ip, "userAgent": entry.source.user_agent,
            "details": entry.details or None, "expiresAt": audit.expires_at(entry.at),
        }
        # append-only: a second entry with the same key is refused, never written over
        self.client.put_item(TableName=self.table, Item=to_item(item), ConditionExpression="attribute_not_exists(pk)")

    def query(self, workspace: str, *, actor: str | None = None, action: str | None = None,
              start: str | None = None, end: str | None = None, cursor: str | None = None,
              limit: int = 50) -> tuple[list[audit.Entry], str | None]:
        """Entries of the workspace, newest first, filtered by actor ("agent:adm", or a bare id for an agent),
        action and time (`start` / `end`: sortable bounds, both included); the next page's cursor or None."""
        if actor is not None and ":" not in actor:
            actor = f"agent:{actor}"
        names: dict[str, str] = {}
        if actor is not None:
            index, key_name, key_value = "byActor", "actorKey", f"{workspace}#{actor}"
        elif action is not None:
            index, key_name, key_value = "byAction", "actionKey", f"{workspace}#{action}"
        else:
            index, key_name, key_value = None, "pk", workspace
        names["#k"] = key_name
        values = {":k": key_value}
        condition = "#k = :k"
        low, high = start, (end + "\uffff" if end else None)  # "to" includes the whole of its day / instant
        if low or high:
            names["#sk"] = "sk"
        if low and high:
            condition += " AND #sk BETWEEN :low AND :high"
            values.update({":low": low, ":high": high})
        elif low:
            condition += " AND #sk >= :low"
            values[":low"] = low
        elif high:
            condition += " AND #sk <= :high"
            values[":high"] = high
        request = {"TableName": self.table, "KeyConditionExpression": condition, "ScanIndexForward": False,
                   "ExpressionAttributeNames": names}
        if index:
            request["IndexName"] = index
        if actor is not None and action is not None:
            request["FilterExpression"] = "#action = :action"
            names["#action"] = "action"
            values[":action"] = action
        request["ExpressionAttributeValues"] = to_item(values)
        expected = {key_name: key_value}
        start_key = cursors.decode(cursor, expected)
        found: list[audit.Entry] = []
        for _ in range(20):  # a filtered page may come back short: read on, a bounded number of times
            page = {**request, "Limit": limit - len(found) if "FilterExpression" not in request else 100}
            if start_key:
                page["ExclusiveStartKey"] = start_key
            response = self.client.query(**page)
            for item in response.get("Items", []):
                found.append(_entry(from_item(item)))
                if len(found) == limit:
                    return found, cursors.encode(_key_of(item, index, key_name))
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                return found, None
        return found, cursors.encode(start_key)


def _key_of(item: dict, index: str | None, key_name: str) -> dict:
    names = ("pk", "sk") + ((key_name,) if index else ())
    return {name: item[name] for name in names}


def _entry(item: dict) -> audit.Entry:
    return audit.Entry(
        workspace=item["pk"], action=item["action"], actor=audit.Actor(item["actorType"], item["actorId"],
                                                                        item.get("actorRole")),
        at=item["at"], id=item["entryId"], target=item.get("target"), outcome=item.get("outcome", "ok"),
        source=audit.Source(item.get("sourceIp"), item.get("userAgent")), details=item.get("details") or {})


class StepUpStore:
    """Agents' TOTP enrolments: enrol, accept a code once, count failures."""

    def __init__(self) -> None:
        self.table = os.environ.get(schema.DIRECTORY.env_var, schema.DIRECTORY.local_name)
        self.client = _client()

    @staticmethod
    def _key(workspace: str, agent_id: str) -> dict:
        return to_item({"pk": f"{workspace}#MFA", "sk": agent_id})

    def enrolled(self, workspace: str, agent_id: str) -> dict | None:
        """The enrolment (secret included: for verifying only), or None."""
        item = self.client.get_item(TableName=self.table, Key=self._key(workspace, agent_id),
                                    ConsistentRead=True).get("Item")
        return from_item(item) if item else None

    def enrol(self, workspace: str, agent_id: str, secret: str, at: str) -> None:
        """A new secret (replacing any earlier one: the caller checked a step-up for that). Failures are kept."""
        self.client.update_item(
            TableName=self.table, Key=self._key(workspace, agent_id),
            UpdateExpression="SET #secret = :secret, enrolledAt = :at, lastStep = :none",
            ExpressionAttributeNames={"#secret": "secret"},
            ExpressionAttributeValues=to_item({":secret": secret, ":at": at, ":none": -1}))

    def use_step(self, workspace: str, agent_id: str, step: int) -> bool:
        """Record that the code of `step` was used; False if it (or a later one) was used already (a replay)."""
        try:
            self.client.update_item(
                TableName=self.table, Key=self._key(workspace, agent_id),
                UpdateExpression="SET lastStep = :step",
                ConditionExpression="attribute_exists(#secret) AND lastStep < :step",
                ExpressionAttributeNames={"#secret": "secret"},
                ExpressionAttributeValues=to_item({":step": step}))
            return True
        except ClientError as error:
            if _conditional(error):
                return False
            raise

    def failures(self, enrolment: dict | None, window: int) -> int:
        if not enrolment or enrolment.get("failWindow") != window:
            return 0
        return int(enrolment.get("failCount", 0))

    def count_failure(self, workspace: str, agent_id: str, window: int) -> int:
        """Count one failed attempt in `window` (a new window starts at 1); the count so far."""
        key = self._key(workspace, agent_id)
        try:
            response = self.client.update_item(
                TableName=self.table, Key=key, UpdateExpression="ADD failCount :one",
                ConditionExpression="failWindow = :w", ReturnValues="UPDATED_NEW",
                ExpressionAttributeValues=to_item({":one": 1, ":w": window}))
            return int(from_item(response["Attributes"])["failCount"])
        except ClientError as error:
            if not _conditional(error):
                raise
        try:
            self.client.update_item(
                TableName=self.table, Key=key, UpdateExpression="SET failWindow = :w, failCount = :one",
                ConditionExpression="attribute_not_exists(failWindow) OR failWindow < :w",
                ExpressionAttributeValues=to_item({":one": 1, ":w": window}))
            return 1
        except ClientError as error:
            if not _conditional(error):
                raise
            return self.count_failure(workspace, agent_id, window)  # another attempt opened the window first

