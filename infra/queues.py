"""SQS queues, built from ``kefu.schema.QUEUES``.

Each queue is encrypted with the stack key (SSE-KMS), denies requests without TLS and
has its own dead-letter queue (same key, TLS only) that takes a message after
``max_receives`` failed receives. The visibility timeout follows the consuming
functions (``schema.Function.consumes``): at least six times the longest function
timeout plus the batching window, as the Lambda documentation recommends, so that a
batch still being processed is not handed to a second invocation.

Who may send and who consumes is granted in ``functions.py``, from the schema.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from kefu import schema

# Every queue message is a delayed check: after four days the situation it checks has long
# been settled by other means, yet the queue still survives a weekend with a broken consumer.
RETENTION = Duration.days(4)
# A message moved to a dead-letter queue keeps its original enqueue time, so the DLQ keeps
# messages longer than the source queue does (14 days, the SQS maximum).
DLQ_RETENTION = Duration.days(14)
VISIBILITY_TIMEOUT_FACTOR = 6  # Lambda's recommendation for SQS event sources
MIN_VISIBILITY_TIMEOUT_S = 30  # the SQS default, for a queue that no function consumes
# Event source mapping of the queue consumers (functions.py): no batching window, so a
# timer that comes due is handled at once rather than up to the window later.
CONSUMER_BATCH_SIZE = 10
CONSUMER_MAX_BATCHING_WINDOW_S = 0


def encrypted_queue(scope: Construct, construct_id: str, key: kms.IKey, retention: Duration, **props) -> sqs.Queue:
    """An SQS queue on the stack key that refuses requests without TLS (every queue of the stack)."""
    return sqs.Queue(scope, construct_id, encryption=sqs.QueueEncryption.KMS, encryption_master_key=key,
                     enforce_ssl=True, retention_period=retention, **props)


def check_references() -> None:
    """Every ``sends_to`` / ``consumes`` of a function names a queue of ``schema.QUEUES``."""
    for spec in schema.FUNCTIONS:
        for queue_id in (*spec.sends_to, *([spec.consumes] if spec.consumes else [])):
            if queue_id not in schema.QUEUES:
                raise ValueError(f"{spec.name} names queue {queue_id!r}, which is not in schema.QUEUES")
    for queue in schema.QUEUES.values():
        if queue.max_receives < 1:
            raise ValueError(f"queue {queue.id}: max_receives must be at least 1")


def consumers_of(queue_id: str) -> list[schema.Function]:
    return [spec for spec in schema.FUNCTIONS if spec.consumes == queue_id]


def visibility_timeout_s(queue_id: str) -> int:
    """6 x (the longest consumer timeout + the batching window), at least the SQS default."""
    timeouts = [spec.timeout_s for spec in consumers_of(queue_id)]
    if not timeouts:
        return MIN_VISIBILITY_TIMEOUT_S
    return max(MIN_VISIBILITY_TIMEOUT_S, VISIBILITY_TIMEOUT_FACTOR * (max(timeouts) + CONSUMER_MAX_BATCHING_WINDOW_S))


class Queues(Construct):
    """``queues`` and ``dead_letter_queues`` map the schema queue id (e.g. "Timers") to the Queue."""

    def __init__(self, scope: Construct, construct_id: str, *, key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        check_references()
        self.queues: dict[str, sqs.Queue] = {}
        self.dead_letter_queues: dict[str, sqs.Queue] = {}

        for spec in schema.QUEUES.values():
            dlq = encrypted_queue(self, f"{spec.id}Dlq", key, DLQ_RETENTION)
            queue = encrypted_queue(
                self,
                spec.id,
                key,
                RETENTION,
                visibility_timeout=Duration.seconds(visibility_timeout_s(spec.id)),
                dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=spec.max_receives),
            )
            self.queues[spec.id] = queue
            self.dead_letter_queues[spec.id] = dlq
