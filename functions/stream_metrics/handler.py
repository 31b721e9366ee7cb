"""Aggregates the conversations stream: the hourly counters (kefu.metrics) and the analytics aggregates
(kefu.analytics: volume, containment, wait, first response, handle time, CSAT... per workspace x
group/agent/channel x hour/day).

Both are summed in memory and go out in transactions over runs of records, each with a marker naming
its records, so the same records delivered again are not counted twice (kefu.adapters.analytics_store);
a batch of a thousand records costs a few transactions. When a transaction fails, the batch reports a
partial failure from that run's first record on (no exception: Lambda would bisect the batch, and halves
name other runs of records).
"""

from __future__ import annotations

from collections import Counter

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecordEventName

from kefu import analytics, metrics, wiring
from kefu.logs import logger

analytics_store = wiring.analytics_store
metrics_out = Metrics(namespace=analytics.EMF_NAMESPACE)  # CloudWatch EMF (namespace from POWERTOOLS_METRICS_NAMESPACE): the stack's alarms

def analytics_chunks(records: list, max_keys: int) -> list[tuple[int, str, str, dict, Counter]]:
    """Runs of consecutive records whose updates fit one transaction (at most max_keys items): (index of
    the run's first record, its first and last sequence numbers, analytics aggregates, hourly counters).
    Deterministic: the same records make the same runs."""
    chunks: list[tuple[int, str, str, dict, Counter]] = []
    start, first, last, current, hourly = 0, None, None, {}, Counter()
    for i, record in enumerate(records):
        if record.dynamodb is None:
            continue
        facts = analytics.facts_from_record(record.event_name.name if record.event_name else "",
                                            record.dynamodb.old_image, record.dynamodb.new_image)
        emit(facts)
        more = analytics.aggregate(facts)
        counters = (Counter(metrics.counters_for(record.dynamodb.new_image or {}))
                    if record.event_name is DynamoDBRecordEventName.INSERT else Counter())
        size = len(current.keys() | more.keys()) + len(hourly.keys() | counters.keys())
        if (current or hourly) and size > max_keys:
            chunks.append((start, first, last, current, hourly))
            start, first, current, hourly = i, None, {}, Counter()
        for key, values in more.items():
            analytics.merge(current.setdefault(key, {}), values)
        hourly.update(counters)
        first = first or str(record.dynamodb.sequence_number)
        last = str(record.dynamodb.sequence_number)
    if first is not None:
        chunks.append((start, first, last, current, hourly))
    return chunks


def emit(facts: list) -> None:
    for name, (unit, values) in analytics.emf_values(facts).items():
        for value in values:
            metrics_out.add_metric(name=name, unit=unit, value=value)


@logger.inject_lambda_context(clear_state=True)  # no keys from the previous invocation
@event_source(data_class=DynamoDBStreamEvent)
def handler(event: DynamoDBStreamEvent, context):
    from kefu.adapters.analytics_store import MAX_TX_ITEMS

    records = list(event.records)
    source = next((r.event_source_arn for r in records if r.event_source_arn), None) or "stream_metrics"
    written = {"transactions": 0, "applied": 0, "skipped": 0}
    for start, first, last, aggregates, hourly in analytics_chunks(records, MAX_TX_ITEMS - 1):
        if not aggregates and not hourly:
            continue
        written["transactions"] += 1
        try:
            applied = analytics_store().write_chunk(aggregates, source, f"{first}#{last}", hourly)
        except Exception:
            logger.exception("analytics write failed: the batch is retried from this run of records",
                             extra={"firstSequenceNumber": first})
            logger.info("stream batch", extra={"records": len(records), "analytics": written})
            metrics_out.clear_metrics()  # dropped (the retry emits what it brings again): EMF is monitoring, the aggregates are the record
            return {"batchItemFailures": [{"itemIdentifier": records[start].dynamodb.sequence_number}]}
        written["applied" if applied else "skipped"] += 1
    logger.info("stream batch", extra={"records": len(records), "analytics": written})
    flush()
    return {"batchItemFailures": []}


def flush() -> None:
    """The batch's EMF metrics (one log line), if it had any: Powertools warns about an empty set."""
    if metrics_out.metric_set:
        metrics_out.flush_metrics()
    metrics_out.clear_metrics()  # flush keeps them when metrics are disabled (the local stack): no pile-up
