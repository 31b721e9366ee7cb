"""DynamoDB Streams pollers: invoke stream handlers the way a Lambda event source mapping does
(batches of records, retried on failure, partial batch responses honoured)."""

from __future__ import annotations

import logging
import threading
import time

from kefu import schema

from .runtime import HandlerError, LambdaRuntime

log = logging.getLogger("kefu.streams")

BATCH_SIZE = 100
MAX_RETRIES = 3


class StreamPoller(threading.Thread):
    def __init__(self, runtime: LambdaRuntime, function: schema.Function, dynamodb, streams, interval_s: float = 0.2):
        super().__init__(name=f"stream-{function.name}", daemon=True)
        self.runtime, self.function = runtime, function
        self.dynamodb, self.streams = dynamodb, streams
        self.interval_s = interval_s
        self.stopped = threading.Event()
        self.delivered = 0

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        table = schema.TABLES[self.function.stream_of]
        arn = self.dynamodb.describe_table(TableName=table.local_name)["Table"]["LatestStreamArn"]
        positions: dict[str, str] = {}  # shard id -> last delivered sequence number
        shards: list[str] = []
        next_describe = 0.0
        while not self.stopped.is_set():
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
                    last = self._drain(arn, iterator)
                    if last:
                        positions[shard_id] = last
            except Exception as error:  # keep polling through transient faults, as the service does
                if not self.stopped.is_set():
                    log.warning("stream poll failed: %s", error)
            self.stopped.wait(self.interval_s)

    def _drain(self, arn: str, iterator: str) -> str | None:
        """Deliver one batch; the sequence number of its last record, or None when there was none."""
        response = self.streams.get_records(ShardIterator=iterator, Limit=self.function.stream_batch_size or BATCH_SIZE)
        records = response.get("Records", [])
        if records:
            for record in records:
                record.setdefault("eventSourceARN", arn)
                dynamodb = record.get("dynamodb", {})
                if hasattr(dynamodb.get("ApproximateCreationDateTime"), "timestamp"):
                    dynamodb["ApproximateCreationDateTime"] = int(dynamodb["ApproximateCreationDateTime"].timestamp())
            self._deliver(records)
            return records[-1]["dynamodb"]["SequenceNumber"]
        return None

    def _deliver(self, records: list[dict]) -> None:
        batch = records
        for attempt in range(1 + MAX_RETRIES):
            try:
                result = self.runtime.invoke(self.function.name, {"Records": batch}) or {}
            except HandlerError as error:
                log.warning("%s failed (attempt %d): %s", self.function.name, attempt + 1, error)
                continue
            failures = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
            if not failures:
                self.delivered += len(batch)
                return
            # partial batch response: retry from the first failed record on
            first = next(i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] in failures)
            self.delivered += first
            batch = batch[first:]
        log.error("%s dropped %d records after %d retries", self.function.name, len(batch), MAX_RETRIES)
