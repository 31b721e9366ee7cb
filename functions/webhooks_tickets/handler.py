"""Signed webhooks for the tickets stream's events (kefu.webhooks; delivery in kefu.webhook_stream)."""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source

from kefu.logs import logger
from kefu.webhook_stream import deliver


@logger.inject_lambda_context(clear_state=True)  # no keys from the previous invocation
@event_source(data_class=DynamoDBStreamEvent)
def handler(event: DynamoDBStreamEvent, context):
    summary = deliver(event.records)
    if summary["failed"]:
        logger.warning("webhook deliveries failed", extra=summary)
    return summary
