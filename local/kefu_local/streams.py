"""DynamoDB Streams pollers: invoke stream handlers the way a Lambda event source mapping does, with
the settings of the CDK stack (infra/functions.py): batches of records in order, partial batch
responses honoured, a batch whose invocation fails split in two and each half retried (bisect on
error), a record that still fails retried up to MAX_RETRIES times, then reported to the function's
on-failure destination (an SQS queue, "{function}-stream-dlq") in the shape Lambda gives it, and
the shard moves on. Nothing is dropped without a trace in that queue. Not emulated: the maximum
record age (a day on AWS; the local stack's shards are fresh)."""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime

from kefu import schema

from .runtime import HandlerError, LambdaRuntime

log = logging.getLogger("kefu.streams")

BATCH_SIZE = 100
MAX_RETRIES = 3  # infra/functions.py STREAM_RETRY_ATTEMPTS
RETRY_BACKOFF_S = 0.1  # doubled on each retry of the same records


def dlq_name(function: schema.Function) -> str:
    return f"{function.name}-stream-dlq"


def create_stream_dlqs(sqs, functions=schema.FUNCTIONS) -> dict[str, str]:
    """The on-failure destination of each stream consumer; returns {function name: queue URL}."""
    return {f.name: sqs.create_queue(QueueName=dlq_name(f))["QueueUrl"] for f in functions if f.stream_of}


class StreamPoller(threading.Thread):
    def __init__(self, runtime: LambdaRuntime, function: schema.Function, dynamodb, streams, interval_s: float = 0.2,
                 *, sqs=None, dlq_url: str | None = None):
        super().__init__(name=f"stream-{function.name}", daemon=True)
        self.runtime, self.function = runtime, function
        self.dynamodb, self.streams = dynamodb, streams
        self.sqs, self.dlq_url = sqs, dlq_url
        self.interval_s = interval_s
        self.stopped = threading.Event()
        self.delivered = 0  # records the function took
        self.dead_lettered = 0  # records given up on (reported to the on-failure destination)
        self.invocations = 0
        self._round = threading.Lock()  # held while a polling round runs; held() pauses the poller

    def stop(self) -> None:
        self.stopped.set()

    @contextmanager
    def held(self):
        """Pause polling (for tests: writes made meanwhile arrive in one batch)."""
        with self._round:
            yield

    def run(self) -> None:
        table = schema.TABLES[self.function.stream_of]
        arn = self.dynamodb.describe_table(TableName=table.local_name)["Table"]["LatestStreamArn"]
        positions: dict[str, str] = {}  # shard id -> last delivered sequence number
        shards: list[str] = []
        next_describe = 0.0
        while not self.stopped.is_set():
            with self._round:
                shards, next_describe = self._poll(arn, positions, shards, next_describe)
            self.stopped.wait(self.interval_s)

    def _poll(self, arn: str, positions: dict[str, str], shards: list[str], next_describe: float):
        try:
            if time.monotonic() >= next_describe:  # new shards appear rarely; look every few seconds
                description = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]
                shards = [s["ShardId"] for s in description["Shards"]]
                next_describe = time.monotonic() + 5
            for shard_id in shards:
                # A fresh iterator from our own checkpoint each round (like the service, which keeps
                # the position, not the iterator): moto swaps its shard objects when it rolls back a
                # cancelled transaction, and an old iterator would go on reading the discarded shard.
                start = {"ShardIteratorType": "TRIM_HORIZON"}
                if shard_id in positions:
                    start = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": positions[shard_id]}
                iterator = self.streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id, **start)["ShardIterator"]
                last = self._drain(arn, shard_id, iterator)
                if last:
                    positions[shard_id] = last
        except Exception as error:  # keep polling through transient faults, as the service does
            if not self.stopped.is_set():
                log.warning("stream poll failed: %s", error)
        return shards, next_describe

    def _drain(self, arn: str, shard_id: str, iterator: str) -> str | None:
        """Deliver one batch; the sequence number of its last record, or None when there was none."""
        response = self.streams.get_records(ShardIterator=iterator, Limit=self.function.stream_batch_size or BATCH_SIZE)
        records = response.get("Records", [])
        if records:
            for record in records:
                record.setdefault("eventSourceARN", arn)
                dynamodb = record.get("dynamodb", {})
                if hasattr(dynamodb.get("ApproximateCreationDateTime"), "timestamp"):
                    dynamodb["ApproximateCreationDateTime"] = int(dynamodb["ApproximateCreationDateTime"].timestamp())
            self._deliver(records, arn, shard_id)
            return records[-1]["dynamodb"]["SequenceNumber"]
        return None

    def _deliver(self, batch: list[dict], arn: str, shard_id: str, retries: int = 0) -> None:
        """Until the function has taken every record of the batch or they are reported to the on-failure
        destination. A failed invocation of several records bisects the batch (halves in order; splitting
        is not a retry); one record that fails, or the rest of a batch from the first record a partial
        batch response names, is retried; after MAX_RETRIES retries it goes to the destination."""
        while True:
            self.invocations += 1
            try:
                result = self.runtime.invoke(self.function.name, {"Records": batch}) or {}
            except HandlerError as error:
                log.warning("%s failed on %d records (retry %d): %s", self.function.name, len(batch), retries, error)
                if len(batch) > 1:
                    half = len(batch) // 2
                    self._deliver(batch[:half], arn, shard_id, retries)
                    self._deliver(batch[half:], arn, shard_id, retries)
                    return
            else:
                failures = {f.get("itemIdentifier") for f in (result.get("batchItemFailures") or [])} \
                    if isinstance(result, dict) else set()
                if not failures:
                    self.delivered += len(batch)
                    return
                # partial batch response: checkpoint before the first failed record, retry from it on (an
                # identifier that names no record of the batch fails the whole batch, as on Lambda)
                first = next((i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] in failures), 0)
                self.delivered += first
                batch = batch[first:]
            if retries >= MAX_RETRIES:
                self._give_up(batch, arn, shard_id, retries + 1)
                return
            if self.stopped.wait(RETRY_BACKOFF_S * 2**retries):
                return
            retries += 1

    def _give_up(self, batch: list[dict], arn: str, shard_id: str, invocations: int) -> None:
        """Report the records to the on-failure destination as Lambda does: the batch's place in the shard
        (not the records: read them from the stream by sequence number within its 24 h retention)."""
        self.dead_lettered += len(batch)
        log.error("%s gave up on %d records after %d retries; reported to %s", self.function.name, len(batch),
                  MAX_RETRIES, dlq_name(self.function))
        if self.sqs is None or self.dlq_url is None:
            return
        created = [r["dynamodb"].get("ApproximateCreationDateTime") for r in batch]
        report = {
            "requestContext": {
                "requestId": f"local-{time.time_ns()}",
                "functionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{self.function.name}",
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": invocations,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": batch[0]["dynamodb"]["SequenceNumber"],
                "endSequenceNumber": batch[-1]["dynamodb"]["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(created[0]),
                "approximateArrivalOfLastRecord": _iso(created[-1]),
                "batchSize": len(batch),
                "streamArn": arn,
            },
        }
        try:
            self.sqs.send_message(QueueUrl=self.dlq_url, MessageBody=json.dumps(report))
        except Exception:
            log.exception("%s: could not report %d records to the on-failure destination", self.function.name,
                          len(batch))


def _iso(epoch_s) -> str | None:
    if not isinstance(epoch_s, (int, float)):
        return None
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
