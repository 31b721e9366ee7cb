"""The Timers port on an SQS queue with per-message delays (up to 15 minutes), consumed by the
timers function. Delayed checks, not schedules: each message is looked at once, when it comes due."""

from __future__ import annotations

import json
import os

import boto3


class SqsTimers:
    def __init__(self, queue_url: str):
        self.queue_url = queue_url
        self._sqs = boto3.client("sqs", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_SQS")
                                 or os.environ.get("AWS_ENDPOINT_URL") or None)

    def schedule(self, payload: dict, delay_s: int) -> None:
        self._sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(payload, separators=(",", ":")),
                               DelaySeconds=max(0, min(int(delay_s), 900)))
