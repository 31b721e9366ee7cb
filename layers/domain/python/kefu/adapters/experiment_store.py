"""A/B experiments, exposures, business events and conversions on DynamoDB (boto3, like webhook_store.py).

Directory table: pk "{ws}#EXP", sk "EXP#{experimentId}": the experiment (its JSON in `doc`, its status
beside it so that start / stop are conditional on the status they read).
Metrics table (no expiry unless said):
- pk "{ws}#EXP#{experimentId}", sk "N#{variantId}": the variant's counters (exposures, conversions), ADDed
  in the same transaction as the marker that makes each count happen once:
- sk "X#{visitorKey}": the visitor's first exposure (variant, at), put only if absent;
- sk "C#{visitorKey}": the visitor's conversion (variant, eventId, at), put only if absent;
- pk "{ws}#V#{visitorKey}", sk "EV#{eventId}": a business event (the integrator's event id is the
  idempotency key: a resent event is not stored or counted again), with the conversation it is credited to;
  it expires (expiresAt) the workspace's retention after it is stored, at most 400 days (kefu.retention);
- pk "{ws}#SEEN", sk visitorKey: visitors the widget has seen (first time); pk "{ws}#BUY", sk visitorKey:
  visitors with at least one business event (the first one) - chatted vs. not-chatted conversion.
The per-visitor markers (X#, C#, SEEN, BUY) expire like business events: the workspace's retention after they are
written, at most 400 days. A visitor seen again after that counts as new (the counters, without identity, stay).
"""

from __future__ import annotations

import json
import os

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .. import retention, schema
from ..experiments import Experiment, within_window
from .attributes import from_item, to_item
from .dynamodb import _host, _region

EVENT_RETENTION_S = retention.EVENT_HORIZON_S  # the longest a business event is kept
MAX_REPORT_VISITORS = 10_000  # the chatted / not-chatted report reads at most this many visitors per group


def experiments_pk(workspace: str) -> str:
    return f"{workspace}#EXP"


def experiment_sk(experiment_id: str) -> str:
    return f"EXP#{experiment_id}"


def counters_pk(workspace: str, experiment_id: str) -> str:
    return f"{workspace}#EXP#{experiment_id}"


def _cancelled(error: ClientError) -> bool:
    return error.response["Error"]["Code"] in ("ConditionalCheckFailedException", "TransactionCanceledException")


class ExperimentStore:
    def __init__(self) -> None:
        self.directory = os.environ.get(schema.DIRECTORY.env_var, schema.DIRECTORY.local_name)
        self.metrics = os.environ.get(schema.METRICS.env_var, schema.METRICS.local_name)
        self.client = boto3.client("dynamodb", region_name=_region(), endpoint_url=_host(),
                                   config=Config(retries={"max_attempts": 5, "mode": "standard"}))

    # ------------------------------------------------------------ experiments

    def create(self, experiment: Experiment) -> None:
        self.client.put_item(TableName=self.directory, ConditionExpression="attribute_not_exists(pk)",
                             Item=to_item({"pk": experiments_pk(experiment.workspace),
                                           "sk": experiment_sk(experiment.id), "status": experiment.status,
                                           "doc": json.dumps(experiment.to_dict())}))

    def replace(self, experiment: Experiment, expected_status: str) -> bool:
        """Write a changed experiment if its stored status is still `expected_status` (False otherwise)."""
        try:
            self.client.put_item(
                TableName=self.directory, ConditionExpression="#s = :old",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=to_item({":old": expected_status}),
                Item=to_item({"pk": experiments_pk(experiment.workspace), "sk": experiment_sk(experiment.id),
                              "status": experiment.status,
                              "doc": json.dumps(experiment.to_dict())}))
        except ClientError as error:
            if _cancelled(error):
                return False
            raise
        return True

    def get(self, workspace: str, experiment_id: str) -> Experiment | None:
        item = self.client.get_item(TableName=self.directory, ConsistentRead=True, Key=to_item(
            {"pk": experiments_pk(workspace), "sk": experiment_sk(experiment_id)})).get("Item")
        return Experiment.from_dict(json.loads(from_item(item)["doc"])) if item else None

    def list(self, workspace: str) -> list[Experiment]:
        """Oldest first (ids start with their creation time)."""
        return [Experiment.from_dict(json.loads(v["doc"]))
                for v in self._query(self.directory, experiments_pk(workspace), "EXP#", consistent=True)]

    # ------------------------------------------------------------ exposures and conversions

    def expose(self, experiment: Experiment, visitor_key: str, variant_id: str, at: str,
               retention_days: int | None = None) -> bool:
        """Log the visitor's first exposure and count it; False (and nothing written) if it was logged before."""
        pk = counters_pk(experiment.workspace, experiment.id)
        return self._once(pk, f"X#{visitor_key}", {"variant": variant_id, "at": at}, variant_id, "exposures",
                          _expires(retention_days))

    def record_conversions(self, experiments: list[Experiment], visitor_key: str, event_id: str,
                           event_at: str, retention_days: int | None = None) -> list[str]:
        """Count a conversion in each experiment the visitor was exposed to within its window before the
        event, once per (experiment, visitor). The ids of the experiments that counted it."""
        counted = []
        for experiment in experiments:
            pk = counters_pk(experiment.workspace, experiment.id)
            item = self.client.get_item(TableName=self.metrics, ConsistentRead=True,
                                        Key=to_item({"pk": pk, "sk": f"X#{visitor_key}"})).get("Item")
            if not item:
                continue
            exposure = from_item(item)
            if not within_window(exposure["at"], event_at, experiment.window_s):
                continue
            if self._once(pk, f"C#{visitor_key}", {"variant": exposure["variant"], "eventId": event_id,
                                                   "at": event_at}, exposure["variant"], "conversions",
                          _expires(retention_days)):
                counted.append(experiment.id)
        return counted

    def counts(self, workspace: str, experiment_id: str) -> dict[str, tuple[int, int]]:
        """variant id -> (exposures, conversions)."""
        return {v["sk"][2:]: (int(v.get("exposures", 0)), int(v.get("conversions", 0)))
                for v in self._query(self.metrics, counters_pk(workspace, experiment_id), "N#", consistent=True)}

    def _once(self, pk: str, marker_sk: str, fields: dict, variant_id: str, counter: str, expires: int) -> bool:
        try:
            self.client.transact_write_items(TransactItems=[
                {"Put": {"TableName": self.metrics, "ConditionExpression": "attribute_not_exists(pk)",
                         "Item": to_item({"pk": pk, "sk": marker_sk, **fields, "expiresAt": expires})}},
                {"Update": {"TableName": self.metrics, "Key": to_item({"pk": pk, "sk": f"N#{variant_id}"}),
                            "UpdateExpression": "ADD #c :one", "ExpressionAttributeNames": {"#c": counter},
                            "ExpressionAttributeValues": to_item({":one": 1})}},
            ])
        except ClientError as error:
            if _cancelled(error):
                return False
            raise
        return True

    # ------------------------------------------------------------ visitors and business events

    def mark_seen(self, workspace: str, visitor_key: str, at: str, retention_days: int | None = None) -> bool:
        return self._put_once(f"{workspace}#SEEN", visitor_key, {"at": at}, expires=_expires(retention_days))

    def record_event(self, workspace: str, visitor_key: str, event: dict, retention_days: int | None = None) -> bool:
        """Store a business event once per (workspace, visitor, eventId); False if it was already stored.
        It expires the workspace's `retention_days` from now (at most 400 days; 400 without one).
        The visitor's first event also marks them as converted."""
        expires = _expires(retention_days)
        stored = self._put_once(f"{workspace}#V#{visitor_key}", f"EV#{event['eventId']}", event, expires=expires)
        if stored:
            self._put_once(f"{workspace}#BUY", visitor_key, {"at": event["at"], "eventId": event["eventId"]},
                           expires=expires)
        return stored

    def visitors(self, workspace: str, which: str) -> set[str]:
        """The visitor keys of "SEEN" or "BUY" (at most MAX_REPORT_VISITORS)."""
        return {v["sk"] for v in self._query(self.metrics, f"{workspace}#{which}", None,
                                             limit=MAX_REPORT_VISITORS)}

    def _put_once(self, pk: str, sk: str, fields: dict, expires: int | None = None) -> bool:
        extra = {"expiresAt": int(expires)} if expires is not None else {}
        try:
            self.client.put_item(TableName=self.metrics, ConditionExpression="attribute_not_exists(pk)",
                                 Item=to_item({**fields, "pk": pk, "sk": sk, **extra}))
        except ClientError as error:
            if _cancelled(error):
                return False
            raise
        return True

    def _query(self, table: str, pk: str, prefix: str | None, consistent: bool = False,
               limit: int | None = None) -> list[dict]:
        out, start = [], None
        condition = "pk = :pk" + (" AND begins_with(sk, :p)" if prefix else "")
        values = {":pk": pk, **({":p": prefix} if prefix else {})}
        while True:
            page = self.client.query(TableName=table, KeyConditionExpression=condition,
                                     ExpressionAttributeValues=to_item(values), ConsistentRead=consistent,
                                     **({"ExclusiveStartKey": start} if start else {}))
            out += [from_item(item) for item in page.get("Items", [])]
            start = page.get("LastEvaluatedKey")
            if not start or (limit is not None and len(out) >= limit):
                return out[:limit] if limit is not None else out


def _expires(retention_days: int | None) -> int:
    """A per-visitor record's TTL: the workspace's retention from now, at most 400 days (kefu.retention)."""
    import time

    return retention.event_expires_at(time.time(), retention_days)
