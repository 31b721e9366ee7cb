"""Aggregates the conversations stream: hourly counters, and analytics facts and aggregates.

Counts are summed in memory per batch and written with one atomic ADD per counter, so a
batch of a thousand messages costs a handful of writes. The analytics aggregates (kefu.analytics:
volume, containment, wait, handle time, CSAT... per workspace x group/agent/channel x hour/day) go out
in transactions over runs of records, each with a marker naming its records, so the same records
delivered again are not counted twice (kefu.adapters.analytics_store). When a transaction fails, the
batch reports a partial failure from its first record on (no exception: Lambda would bisect the batch,
and halves name other record runs); the hourly counters then count only the records before it.
"""

from __future__ import annotations

from collections import Counter

from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecordEventName

from kefu import analytics, metrics, wiring
from kefu.logs import logger

store = wiring.metrics_store()
analytics_store = wiring.analytics_store

def analytics_chunks(records: list, max_keys: int) -> list[tuple[int, str, str, dict]]:
    """Runs of consecutive records whose aggregates fit one transaction (at most max_keys items):
    (index of the run's first record, its first and last sequence numbers, aggregates). Deterministic:
    the same records make the same runs."""
    chunks: list[tuple[int, str, str, dict]] = []
    start, first, last, current = 0, None, None, {}
    for i, record in enumerate(records):
        if record.dynamodb is None:
            continue
        facts = analytics.facts_from_record(record.event_name.name if record.event_name else "",
                                            record.dynamodb.old_image, record.dynamodb.new_image)
        more = analytics.aggregate(facts)
        if current and len(current.keys() | more.keys()) > max_keys:
            chunks.append((start, first, last, current))
            start, first, current = i, None, {}
        for key, counters in more.items():
            analytics.merge(current.setdefault(key, {}), counters)
        first = first or str(record.dynamodb.sequence_number)
        last = str(record.dynamodb.sequence_number)
    if first is not None:
        chunks.append((start, first, last, current))
    return chunks


@event_source(data_class=DynamoDBStreamEvent)
def handler(event: DynamoDBStreamEvent, context):
    from kefu.adapters.analytics_store import MAX_TX_ITEMS

    records = list(event.records)
    source = next((r.event_source_arn for r in records if r.event_source_arn), None) or "stream_metrics"
    written = {"transactions": 0, "applied": 0, "skipped": 0}
    failed_at = len(records)
    for start, first, last, aggregates in analytics_chunks(records, MAX_TX_ITEMS - 1):
        if not aggregates:
            continue
        written["transactions"] += 1
        try:
            applied = analytics_store().write_chunk(aggregates, source, f"{first}#{last}")
        except Exception:
            logger.exception("analytics write failed: the batch is retried from this run of records",
                             extra={"firstSequenceNumber": first})
            failed_at = start
            break
        written["applied" if applied else "skipped"] += 1
    counts: Counter = Counter()
    for record in records[:failed_at]:
        if record.event_name is not DynamoDBRecordEventName.INSERT or record.dynamodb is None:
            continue
        counts.update(metrics.counters_for(record.dynamodb.new_image or {}))
    store.add_counters(counts)
    logger.info("stream batch", extra={"records": len(records), "counters": len(counts), "analytics": written})
    if failed_at < len(records):
        return {"batchItemFailures": [{"itemIdentifier": records[failed_at].dynamodb.sequence_number}]}
    return {"batchItemFailures": []}
