"""Analytics aggregates in the Metrics table, written exactly once per stream batch.

Items: pk "{ws}#AGG", sk "{granularity}#{period}#{dimension}" (e.g. "H#2026-11-21T15#group:sales"), one
number attribute per counter of kefu.analytics.COUNTERS (ADDed, absent = 0). They live in their own
partition so that the hourly counters' queries on pk "{ws}" never see them.

Idempotence: updates go out in TransactWriteItems of at most MAX_TX_ITEMS items; each also puts a marker
item (pk "BATCH#{source}", sk naming the records it covers: "{first seq}#{last seq}") on condition that it
does not exist yet. Delivered again, the same records make the same chunk, which fails on its marker
(ConditionalCheckFailed) and is skipped. The stream handler chunks by runs of records (write_chunk) and,
when a chunk fails, reports a partial batch failure from that chunk's first record on instead of raising,
so Lambda neither re-delivers the chunks already applied nor bisects the batch (with bisection a retried
half would name other records and count them again). `apply` chunks a whole batch's aggregates (tests,
tools). Markers expire after MARKER_TTL_S (longer than a stream record's 24 h life).
"""

from __future__ import annotations

import os
import time

import boto3

from .. import analytics, schema
from .dynamodb import _host, _region

MAX_TX_ITEMS = 100  # DynamoDB's limit per TransactWriteItems
MARKER_TTL_S = 3 * 24 * 3600


def agg_pk(workspace: str) -> str:
    return f"{workspace}#AGG"


def agg_sk(key: analytics.AggregateKey) -> str:
    return f"{key.granularity}#{key.period}#{key.dimension}"


class AnalyticsStore:
    def __init__(self, client=None, table_name: str | None = None) -> None:
        self.client = client or boto3.client("dynamodb", region_name=_region(), endpoint_url=_host())
        self.table = table_name or os.environ.get(schema.METRICS.env_var, schema.METRICS.local_name)

    def _update(self, key: analytics.AggregateKey, counters: dict[str, int], expires: int) -> dict:
        names, values, adds = {"#x": "expiresAt"}, {":x": {"N": str(expires)}}, []
        for i, (name, n) in enumerate(sorted(counters.items())):
            names[f"#c{i}"] = name
            values[f":c{i}"] = {"N": str(int(n))}
            adds.append(f"#c{i} :c{i}")
        return {"Update": {
            "TableName": self.table,
            "Key": {"pk": {"S": agg_pk(key.workspace)}, "sk": {"S": agg_sk(key)}},
            "UpdateExpression": "ADD " + ", ".join(adds) + " SET #x = :x",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }}

    def _hourly(self, workspace: str, key: str, n: int, expires: int) -> dict:
        """An hourly counter of kefu.metrics (pk "{ws}", sk "{hour}#{counter}", attribute value)."""
        return {"Update": {
            "TableName": self.table,
            "Key": {"pk": {"S": workspace}, "sk": {"S": key}},
            "UpdateExpression": "ADD #v :n SET #x = :x",
            "ExpressionAttributeNames": {"#v": "value", "#x": "expiresAt"},
            "ExpressionAttributeValues": {":n": {"N": str(int(n))}, ":x": {"N": str(expires)}},
        }}

    def write_chunk(self, aggregates: dict[analytics.AggregateKey, dict[str, int]], source: str, marker: str,
                    hourly: dict[tuple[str, str], int] | None = None) -> bool:
        """One transaction: the ADD updates of the aggregates and of the hourly counters (at most
        MAX_TX_ITEMS - 1 together) and the marker put. True when applied now, False when the marker says
        it was applied before."""
        from ..metrics import METRIC_RETENTION_S

        updates = [(k, c) for k, c in sorted(aggregates.items()) if c]
        counters = sorted((k, n) for k, n in (hourly or {}).items() if n)
        if len(updates) + len(counters) > MAX_TX_ITEMS - 1:
            raise ValueError(f"at most {MAX_TX_ITEMS - 1} updates per transaction, got {len(updates) + len(counters)}")
        now = int(time.time())
        expires = now + analytics.AGG_RETENTION_S
        put = {"Put": {
            "TableName": self.table,
            "Item": {"pk": {"S": f"BATCH#{source}"}, "sk": {"S": marker},
                     "appliedAt": {"N": str(now)}, "expiresAt": {"N": str(now + MARKER_TTL_S)}},
            "ConditionExpression": "attribute_not_exists(pk)",
        }}
        try:
            self.client.transact_write_items(
                TransactItems=[put] + [self._update(k, c, expires) for k, c in updates]
                + [self._hourly(ws, key, n, now + METRIC_RETENTION_S) for (ws, key), n in counters])
        except self.client.exceptions.TransactionCanceledException as error:
            reasons = error.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return False  # applied before
            raise
        return True

    def apply(self, aggregates: dict[analytics.AggregateKey, dict[str, int]], source: str,
              first_seq: str, last_seq: str) -> dict:
        """Write one batch's aggregates once, in chunks of the aggregates (deterministic: keys sorted).
        Returns {"transactions", "applied", "skipped", "items"}."""
        updates = sorted((k, c) for k, c in aggregates.items() if c)
        per_tx = MAX_TX_ITEMS - 1  # one slot for the marker
        chunks = [dict(updates[i:i + per_tx]) for i in range(0, len(updates), per_tx)]
        stats = {"transactions": 0, "applied": 0, "skipped": 0, "items": 0}
        for index, chunk in enumerate(chunks):
            stats["transactions"] += 1
            if self.write_chunk(chunk, source, f"{first_seq}#{last_seq}#{index}/{len(chunks)}"):
                stats["applied"] += 1
                stats["items"] += len(chunk) + 1
            else:
                stats["skipped"] += 1
        return stats

    def read(self, workspace: str, granularity: str, first_period: str, last_period: str,
             dimension: str | None = None) -> dict[tuple[str, str], dict[str, int]]:
        """{(period, dimension): counters} from first_period to last_period, both included."""
        out: dict[tuple[str, str], dict[str, int]] = {}
        kwargs = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :a AND :b",
            "ExpressionAttributeValues": {":pk": {"S": agg_pk(workspace)},
                                          ":a": {"S": f"{granularity}#{first_period}#"},
                                          ":b": {"S": f"{granularity}#{last_period}#~"}},
            "ConsistentRead": True,
        }
        while True:
            page = self.client.query(**kwargs)
            for item in page.get("Items", []):
                _, period, dim = item["sk"]["S"].split("#", 2)
                if dimension is not None and dim != dimension:
                    continue
                out[(period, dim)] = {name: int(v["N"]) for name, v in item.items()
                                      if name in analytics.COUNTERS and "N" in v}
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
