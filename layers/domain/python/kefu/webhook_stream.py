"""The webhook stream functions' one job: turn a batch of stream records into domain events and deliver
them to the workspace's subscribers. Results are recorded (GET .../webhooks/{id}/deliveries); the batch
never fails, because a retried batch would deliver again what already arrived."""

from __future__ import annotations

from . import wiring
from .webhooks import events_from_stream_record


def deliver(records) -> dict:
    events = []
    for record in records:
        change = record.dynamodb
        if change is None:
            continue
        events += events_from_stream_record(record.event_name, change.old_image, change.new_image)
    if not events:
        return {"events": 0, "deliveries": 0, "failed": 0}
    store = wiring.webhook_store()
    subscriptions = [s for ws in sorted({e.workspace for e in events}) for s in store.subscriptions_for(ws)]
    results = wiring.webhook_dispatcher().dispatch(events, subscriptions) if subscriptions else []
    return {"events": len(events), "deliveries": len(results), "failed": sum(not r.ok for r in results)}
