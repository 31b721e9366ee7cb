"""Aggregates hourly counters per workspace from the conversations stream.

Counts are summed in memory per batch and written with one atomic ADD per counter, so a
batch of a thousand messages costs a handful of writes.
"""

from __future__ import annotations

from collections import Counter

from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecordEventName

from kefu import metrics, wiring
from kefu.logs import logger

store = wiring.metrics_store()


@event_source(data_class=DynamoDBStreamEvent)
def handler(event: DynamoDBStreamEvent, context):
    counts: Counter = Counter()
    for record in event.records:
        if record.event_name is not DynamoDBRecordEventName.INSERT or record.dynamodb is None:
            continue
        counts.update(metrics.counters_for(record.dynamodb.new_image or {}))
    store.add_counters(counts)
    logger.info("stream batch", extra={"records": len(list(event.records)), "counters": len(counts)})
    return {"batchItemFailures": []}
