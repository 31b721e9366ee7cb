"""SQS event source mappings for the local stack: poll a queue, invoke its consumer with the SQS
event shape, delete what succeeded (partial batch responses honoured). What fails becomes visible
again after the visibility timeout and, after the queue's max receives, moves to its dead-letter
queue (moto implements the redrive policy)."""

from __future__ import annotations

import json
import logging
import threading

from kefu import schema

from . import events
from .runtime import HandlerError, LambdaRuntime

log = logging.getLogger("kefu.queues")

LOCAL_VISIBILITY_TIMEOUT_S = 5  # retry soon: the local stack is for humans and tests


def create_queues(sqs, queues=schema.QUEUES.values()) -> dict[str, str]:
    """Each queue with its dead-letter queue; returns {queue id: URL}."""
    urls = {}
    for queue in queues:
        dlq_url = sqs.create_queue(QueueName=f"{queue.local_name}-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        urls[queue.id] = sqs.create_queue(QueueName=queue.local_name, Attributes={
            "VisibilityTimeout": str(LOCAL_VISIBILITY_TIMEOUT_S),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": queue.max_receives}),
        })["QueueUrl"]
    return urls


class QueuePoller(threading.Thread):
    # Short polls at a steady pace: moto's long poll spins a CPU core for the whole wait.
    def __init__(self, runtime: LambdaRuntime, function: schema.Function, sqs, queue_url: str,
                 interval_s: float = 0.05, batch_size: int = 10):
        super().__init__(name=f"sqs-{function.name}", daemon=True)
        self.runtime, self.function, self.sqs, self.queue_url = runtime, function, sqs, queue_url
        self.interval_s, self.batch_size = interval_s, batch_size
        self.stopped = threading.Event()
        self.delivered = 0
        self.failed = 0

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        while not self.stopped.is_set():
            try:
                messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size,
                                                    WaitTimeSeconds=0, AttributeNames=["All"]).get("Messages", [])
                if messages:
                    self._deliver(messages, arn)
                    continue  # more may be waiting
            except Exception as error:  # keep polling through transient faults, as the service does
                if not self.stopped.is_set():
                    log.warning("queue poll failed: %s", error)
            self.stopped.wait(self.interval_s)

    def _deliver(self, messages: list[dict], arn: str) -> None:
        try:
            result = self.runtime.invoke(self.function.name, events.sqs_event(messages, arn)) or {}
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        except HandlerError as error:
            log.warning("%s failed: %s", self.function.name, error)
            failed = {m["MessageId"] for m in messages}
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)])
        self.delivered += len(done)
        self.failed += len(failed)
