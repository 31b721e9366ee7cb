"""Delayed checks from the Timers queue: an agent's grace period ran out, a waiting customer did not
come back, a queue drain after an agent connected. One failed check is retried alone (partial batch
response); the rest of the batch is done."""

from __future__ import annotations

import json

from kefu import wiring
from kefu.logs import logger

router = wiring.router()


@logger.inject_lambda_context(clear_state=True)  # no keys from the previous invocation
def handler(event, context):
    failures = []
    for record in event.get("Records", []):
        try:
            payload = json.loads(record["body"])
            logger.append_keys(timer=payload.get("kind"), workspace=payload.get("workspace"))
            router.timer(payload)
        except Exception:
            logger.exception("timer failed")
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
