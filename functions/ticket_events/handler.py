"""Reacts to ticket changes (the Tickets stream): starts an escalation run for each new SLA deadline of
an open or pending ticket and stops the previous run when the ticket is resolved, closed or gets a new
deadline. Runs are named by ticket and deadline, so redelivered records change nothing. Keeps the TTL of a
finished ticket's comments equal to the ticket's (kefu.retention): after every change of a resolved or closed
ticket (a comment written meanwhile included) and when it is reopened."""

from __future__ import annotations

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source

from kefu import analytics, wiring
from kefu.adapters.ticket_store import ticket_from_image
from kefu.logs import logger
from kefu.tickets import TICKET_SK, escalation_input, escalation_plan


metrics_out = Metrics(namespace=analytics.EMF_NAMESPACE)  # CloudWatch EMF: SLA breaches (each escalation is a deadline missed)


@logger.inject_lambda_context(clear_state=True)  # no keys from the previous invocation
@event_source(data_class=DynamoDBStreamEvent)
def handler(event: DynamoDBStreamEvent, context):
    started = stopped = expired = 0
    breaches = 0
    source = None
    for record in event.records:
        change = record.dynamodb
        if change is None or (change.new_image or change.old_image or {}).get("sk") != TICKET_SK:
            continue
        old = ticket_from_image(change.old_image) if change.old_image else None
        new = ticket_from_image(change.new_image) if change.new_image else None
        if old is not None and new is not None and new.escalation_level > old.escalation_level:
            breaches += new.escalation_level - old.escalation_level
        facts = analytics.ticket_facts(old, new)
        if facts:  # one marked transaction per record: counted once however the batch is retried or split
            source = source or record.event_source_arn or "ticket_events"
            try:
                wiring.analytics_store().write_chunk(analytics.aggregate(facts), source,
                                                     f"R#{change.sequence_number}")
            except Exception:  # noqa: BLE001 - the numbers must not hold up escalations
                logger.exception("ticket analytics not written", extra={"ticketId": new.id})
        stop, start = escalation_plan(old, new)
        if stop:
            stopped += wiring.escalations().stop(stop, cause=f"ticket {new.status if new else 'deleted'}")
        if start:
            payload = escalation_input(new, wiring.tickets().settings(new.workspace))
            started += wiring.escalations().start(start, payload)
        if new is not None and (new.expires_at is not None or (old is not None and old.expires_at is not None)):
            expired += wiring.ticket_store().expire_comments(new.workspace, new.id, new.expires_at)
    if breaches:
        metrics_out.add_metric(name=analytics.EMF_SLA_BREACHES, unit="Count", value=breaches)
        metrics_out.flush_metrics()
        metrics_out.clear_metrics()  # flush keeps them when metrics are disabled (the local stack)
    if started or stopped:
        logger.info("escalation runs", extra={"started": started, "stopped": stopped})
    return {"started": started, "stopped": stopped, "commentsExpiring": expired}
