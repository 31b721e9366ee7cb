"""Webhook subscriptions and their delivery log on DynamoDB (boto3, like ticket_store.py).

Directory table: pk "{ws}#WH", sk "SUB#{subscriptionId}": one item per subscription (with its secret:
deliveries are signed with it, so it is stored as it is; the REST API never shows it again).
Metrics table: pk "{ws}#WHD#{subscriptionId}", sk "{at}#{deliveryId}": one item per finished delivery,
expiring after 30 days (the table's TTL attribute), read newest first.
"""

from __future__ import annotations

import os
import threading
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from .. import schema
from ..webhooks import DeliveryResult, Subscription
from .attributes import from_item, to_item
from .dynamodb import _host, _region

DELIVERY_RETENTION_S = 30 * 86400
CACHE_S = 30.0
MAX_DELIVERIES = 200



def subscriptions_pk(workspace: str) -> str:
    return f"{workspace}#WH"


def subscription_sk(subscription_id: str) -> str:
    return f"SUB#{subscription_id}"


def deliveries_pk(workspace: str, subscription_id: str) -> str:
    return f"{workspace}#WHD#{subscription_id}"








def _subscription(values: dict) -> Subscription:
    return Subscription(
        workspace=values["workspace"], id=values["subscriptionId"], url=values["url"],
        events=tuple(values.get("events") or ()), secret=values["secret"], active=bool(values.get("active", True)),
        description=values.get("description", ""), created_at=values.get("createdAt", ""),
    )


def _delivery(values: dict) -> DeliveryResult:
    return DeliveryResult(
        subscription_id=values["subscriptionId"], workspace=values["workspace"], event_id=values["eventId"],
        event_type=values["eventType"], delivery_id=values["deliveryId"], ok=bool(values["ok"]),
        attempts=int(values.get("attempts", 0)), status_code=values.get("statusCode"), error=values.get("error"),
        duration_ms=int(values.get("durationMs", 0)), at=values["at"],
    )


class DynamoWebhookStore:
    """Subscriptions (Directory) and the delivery log (Metrics). Also the Dispatcher's Recorder."""

    def __init__(self, cache_s: float = CACHE_S) -> None:
        self.directory = os.environ.get(schema.DIRECTORY.env_var, schema.DIRECTORY.local_name)
        self.metrics = os.environ.get(schema.METRICS.env_var, schema.METRICS.local_name)
        self.client = boto3.client("dynamodb", region_name=_region(), endpoint_url=_host(),
                                   config=Config(retries={"max_attempts": 5, "mode": "standard"}))
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, list[Subscription]]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ subscriptions

    def list_subscriptions(self, workspace: str) -> list[Subscription]:
        out, start = [], None
        while True:
            page = self.client.query(
                TableName=self.directory, KeyConditionExpression="pk = :pk AND begins_with(sk, :sub)",
                ExpressionAttributeValues=to_item({":pk": subscriptions_pk(workspace), ":sub": "SUB#"}),
                ConsistentRead=True, **({"ExclusiveStartKey": start} if start else {}))
            out += [_subscription(from_item(item)) for item in page.get("Items", [])]
            start = page.get("LastEvaluatedKey")
            if not start:
                return out

    def get_subscription(self, workspace: str, subscription_id: str) -> Subscription | None:
        item = self.client.get_item(TableName=self.directory, ConsistentRead=True, Key=to_item(
            {"pk": subscriptions_pk(workspace), "sk": subscription_sk(subscription_id)})).get("Item")
        return _subscription(from_item(item)) if item else None

    def put_subscription(self, subscription: Subscription) -> None:
        """Create or replace (a change keeps the id, the secret and createdAt: see webhooks.update_subscription)."""
        self.client.put_item(TableName=self.directory, Item=to_item({
            "pk": subscriptions_pk(subscription.workspace), "sk": subscription_sk(subscription.id),
            "workspace": subscription.workspace, "subscriptionId": subscription.id, "url": subscription.url,
            "events": list(subscription.events), "secret": subscription.secret, "active": subscription.active,
            "description": subscription.description, "createdAt": subscription.created_at,
        }))
        self._forget(subscription.workspace)

    def delete_subscription(self, workspace: str, subscription_id: str) -> bool:
        """False when there was no such subscription. Its delivery log expires on its own."""
        try:
            self.client.delete_item(
                TableName=self.directory,
                Key=to_item({"pk": subscriptions_pk(workspace), "sk": subscription_sk(subscription_id)}),
                ConditionExpression="attribute_exists(pk)")
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        finally:
            self._forget(workspace)
        return True

    def subscriptions_for(self, workspace: str) -> list[Subscription]:
        """The workspace's active subscriptions, cached for cache_s seconds in this process (the stream
        consumer asks once per batch; a change made elsewhere shows within that time)."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(workspace)
            if cached and cached[0] > now:
                return cached[1]
        found = [s for s in self.list_subscriptions(workspace) if s.active]
        with self._lock:
            self._cache[workspace] = (now + self.cache_s, found)
        return found

    def _forget(self, workspace: str) -> None:
        with self._lock:
            self._cache.pop(workspace, None)

    # ------------------------------------------------------------ deliveries

    def record(self, result: DeliveryResult) -> None:
        self.client.put_item(TableName=self.metrics, Item=to_item({
            "pk": deliveries_pk(result.workspace, result.subscription_id), "sk": f"{result.at}#{result.delivery_id}",
            "workspace": result.workspace, "subscriptionId": result.subscription_id, "eventId": result.event_id,
            "eventType": result.event_type, "deliveryId": result.delivery_id, "ok": result.ok,
            "attempts": result.attempts, "statusCode": result.status_code, "error": result.error,
            "durationMs": result.duration_ms, "at": result.at,
            "expiresAt": int(time.time()) + DELIVERY_RETENTION_S,
        }))

    def deliveries(self, workspace: str, subscription_id: str, limit: int = 50) -> list[DeliveryResult]:
        """The newest `limit` deliveries (at most MAX_DELIVERIES), newest first."""
        limit = max(1, min(int(limit), MAX_DELIVERIES))
        page = self.client.query(
            TableName=self.metrics, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=to_item({":pk": deliveries_pk(workspace, subscription_id)}),
            ScanIndexForward=False, Limit=limit)
        return [_delivery(from_item(item)) for item in page.get("Items", [])]
