"""The rate limiter's Counters port on DynamoDB (kefu.ratelimit): one conditional UpdateItem per check.

Table and key layout: kefu.schema.RATE_LIMITS. The update adds 1 to every counter of the check and sets the
TTL, on the condition that each counter is absent or below its cap; a refusal returns the item as it was
(ReturnValuesOnConditionCheckFailure), so the limiter learns which limit is full without another read.
"""

from __future__ import annotations

import os
from functools import lru_cache

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .. import schema
from .dynamodb import _host, _region


class DynamoCounters:
    """Implements kefu.ratelimit.Counters."""

    def __init__(self, client=None) -> None:
        table = schema.RATE_LIMITS
        self.table = os.environ.get(table.env_var, table.local_name)
        self.ttl = table.ttl_attribute
        # the limiter sits in the message path: a slow or throttled counter fails open (ratelimit.RateLimiter)
        # after one quick retry instead of holding the message up
        self.client = client or boto3.client(
            "dynamodb", region_name=_region(), endpoint_url=_host(),
            config=Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=2, read_timeout=2))

    def hit(self, subject: str, bucket: str, caps: dict[str, int], expires_at: int) -> dict[str, int] | None:
        names = {"#ttl": self.ttl}
        values = {":one": {"N": "1"}, ":ttl": {"N": str(int(expires_at))}}
        adds, conditions = [], []
        for i, (name, cap) in enumerate(caps.items()):
            names[f"#c{i}"] = name
            values[f":m{i}"] = {"N": str(int(cap))}
            adds.append(f"#c{i} :one")
            conditions.append(f"(attribute_not_exists(#c{i}) OR #c{i} < :m{i})")
        key = {"pk": {"S": schema.RATE_LIMIT_PK_PREFIX + subject}, "sk": {"S": bucket}}
        try:
            self.client.update_item(
                TableName=self.table, Key=key,
                UpdateExpression="ADD " + ", ".join(adds) + " SET #ttl = :ttl",
                ConditionExpression=" AND ".join(conditions),
                ExpressionAttributeNames=names, ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            item = error.response.get("Item")
            if item is None:  # an engine that does not return the old item: read it
                item = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item") or {}
            return {name: int(item[name]["N"]) if name in item else 0 for name in caps}
        return None


@lru_cache(maxsize=1)
def counters() -> DynamoCounters:
    """One client per container (warm invocations reuse it)."""
    return DynamoCounters()
