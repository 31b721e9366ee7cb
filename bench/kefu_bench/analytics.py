"""Stream analytics benchmark (issue 7): one batch of conversation-stream records through stream_metrics.

`kefu bench analytics --records 1000` prints run()'s result as JSON.

A moto server (child process, as in the local stack) holds the Metrics table; the stream_metrics handler
is loaded and invoked in this process through the local Lambda runtime, with a synthetic batch in the
DynamoDB Streams wire format: conversations across a few workspaces, groups, agents and channels, each one
the records the store really writes (META insert, queued, assigned, messages as USED#/META/MSG# records,
closed, rated). The same batch is then delivered a second time, as Lambda does after a failure.
Counted: DynamoDB requests by operation (botocore, in this process), items written in transactions, the
handler's CPU time (time.process_time: moto runs in its own process) and the pure domain part
(facts + in-memory aggregation) on its own.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

WORKSPACES = ("shop-a", "shop-b", "shop-c")
GROUPS = ("sales", "support", "billing", "vip")
AGENTS = tuple(f"agent-{i}" for i in range(1, 7))
STREAM_ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/kefu-conversations/stream/bench"


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def synthetic_records(count: int, seed: int = 7) -> list[tuple[str, dict | None, dict]]:
    """(eventName, old image, new image) of `count` stream records (plain Python values)."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 21, 9, 0, tzinfo=timezone.utc)
    out: list[tuple[str, dict | None, dict]] = []
    n = 0
    while len(out) < count:
        ws, group, agent = rng.choice(WORKSPACES), rng.choice(GROUPS), rng.choice(AGENTS)
        t = start + timedelta(seconds=rng.randrange(3 * 3600))
        pk = f"{ws}#C#c{n}"
        bot = rng.random() < 0.3
        meta = {"pk": pk, "sk": "META", "kind": "meta", "workspace": ws, "conversationId": f"c{n}",
                "channel": "wechat" if rng.random() < 0.2 else "web", "status": "bot" if bot else "open",
                "openedAt": _iso(t), "updatedAt": _iso(t), "lastSeq": Decimal(0), "group": group}
        out.append(("INSERT", None, dict(meta)))

        def change(seconds: float, **fields) -> None:
            nonlocal t
            old = dict(meta)
            t += timedelta(seconds=seconds)
            meta.update(fields, updatedAt=_iso(t))
            for k in [k for k, v in fields.items() if v is None]:
                meta.pop(k)
            out.append(("MODIFY", old, dict(meta)))

        def message(role: str) -> None:
            seq = int(meta["lastSeq"]) + 1
            out.append(("INSERT", None, {"pk": pk, "sk": f"USED#{role}#m{seq}", "kind": "dedup", "seq": Decimal(seq)}))
            change(rng.uniform(1, 30), lastSeq=Decimal(seq))
            out.append(("INSERT", None, {"pk": pk, "sk": f"MSG#{seq:012d}", "kind": "msg", "seq": Decimal(seq),
                                         "senderRole": role, "senderId": "x", "text": "hello",
                                         "createdAt": meta["updatedAt"]}))

        message("customer")
        if bot and rng.random() < 0.6:  # contained
            message("bot")
            d = rng.uniform(10, 120)
            change(d, status="closed", closedAt=_iso(t + timedelta(seconds=d)), closeReason="resolved:customer")
        else:
            if bot:
                message("bot")
                change(2, status="open")
            change(1, status="queued", queuedAt=_iso(t + timedelta(seconds=1)), routing=json.dumps({"reason": "queued"}))
            if rng.random() < 0.1:  # abandoned
                d = rng.uniform(30, 600)
                change(d, status="closed", closedAt=_iso(t + timedelta(seconds=d)), closeReason="abandoned:left")
            else:
                wait = rng.expovariate(1 / 60)
                change(wait, status="assigned", agentId=agent, assignedAt=_iso(t + timedelta(seconds=wait)),
                       routing=json.dumps({"reason": "least busy"}))
                message("agent")
                message("customer")
                reason = "resolved:agent" if rng.random() < 0.8 else "unresolved:agent"
                d = rng.uniform(60, 900)
                change(d, status="closed", closedAt=_iso(t + timedelta(seconds=d)), closeReason=reason)
        if meta["status"] == "closed" and rng.random() < 0.4:
            change(20, csat={"score": Decimal(rng.randint(1, 5)), "comment": "", "at": _iso(t + timedelta(seconds=20))})
        n += 1
    return out[:count]


def stream_event(records: list[tuple[str, dict | None, dict]], first_seq: int = 10**20) -> dict:
    from boto3.dynamodb.types import TypeSerializer

    ser = TypeSerializer()
    wire = []
    for i, (name, old, new) in enumerate(records):
        dynamodb = {"Keys": {"pk": {"S": new["pk"]}, "sk": {"S": new["sk"]}}, "SequenceNumber": str(first_seq + i),
                    "SizeBytes": 200, "StreamViewType": "NEW_AND_OLD_IMAGES", "ApproximateCreationDateTime": 1763715600,
                    "NewImage": {k: ser.serialize(v) for k, v in new.items()}}
        if old is not None:
            dynamodb["OldImage"] = {k: ser.serialize(v) for k, v in old.items()}
        wire.append({"eventID": f"e{i}", "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
                     "awsRegion": "us-east-1", "eventSourceARN": STREAM_ARN, "dynamodb": dynamodb})
    return {"Records": wire}


def run(records: int = 1000, seed: int = 7) -> dict:
    from kefu import analytics, schema
    from kefu_local.runtime import STATS, LambdaRuntime, install_request_counter
    from kefu_local.services import LOCAL_CREDENTIALS, MotoServer, create_tables

    root = Path(__file__).resolve().parents[2]
    log_dir = Path(tempfile.mkdtemp(prefix="kefu-bench-analytics-"))
    moto = MotoServer(log_file=log_dir / "moto.log").start()
    try:
        os.environ.update(LOCAL_CREDENTIALS)
        os.environ.update({"AWS_ENDPOINT_URL": moto.url, "AWS_DEFAULT_REGION": "us-east-1",
                           "POWERTOOLS_LOG_LEVEL": "WARNING",
                           **{t.env_var: t.local_name for t in schema.TABLES.values()}})
        import boto3

        create_tables(boto3.client("dynamodb", endpoint_url=moto.url, region_name="us-east-1"), [schema.METRICS])
        install_request_counter()
        runtime = LambdaRuntime(root / "functions")
        log = synthetic_records(records, seed)
        event = stream_event(log)

        started = time.process_time()
        facts = [f for name, old, new in log for f in analytics.facts_from_record(name, old, new)]
        aggregates = analytics.aggregate(facts)
        domain_ms = (time.process_time() - started) * 1000

        from kefu.adapters import analytics_store

        chunks: list[tuple[bool, int]] = []  # (applied now, aggregates) per transaction of the handler
        original_write = analytics_store.AnalyticsStore.write_chunk

        def recording_write(self, aggregates, *args, **kwargs):
            chunks.append((original_write(self, aggregates, *args, **kwargs), len(aggregates)))
            return chunks[-1][0]

        analytics_store.AnalyticsStore.write_chunk = recording_write
        # warm the container (imports, clients) on an unrelated one-record batch, as a warm Lambda would be
        warm = dict(log[0][2], pk="bench-warmup#C#w", workspace="bench-warmup")
        runtime.invoke("stream_metrics", stream_event([("INSERT", None, warm)], first_seq=1))
        deliveries = []
        for attempt in ("first", "redelivered"):
            STATS.reset()
            chunks.clear()
            cpu0 = time.process_time()
            wall0 = time.perf_counter()
            runtime.invoke("stream_metrics", event)
            cpu_ms = (time.process_time() - cpu0) * 1000
            wall_ms = (time.perf_counter() - wall0) * 1000
            stats = STATS.snapshot()
            requests = stats["aws_requests"]
            deliveries.append({
                "delivery": attempt,
                "dynamodb_requests": requests,
                "transact_write_items_calls": requests.get("dynamodb.TransactWriteItems", 0),
                "hourly_counter_updates": requests.get("dynamodb.UpdateItem", 0),
                "cpu_ms": round(cpu_ms, 1),
                "cpu_ms_per_record": round(cpu_ms / records, 4),
                "wall_ms": round(wall_ms, 1),
                "analytics_transactions_applied": sum(1 for ok, _ in chunks if ok),
                "analytics_transactions_skipped": sum(1 for ok, _ in chunks if not ok),
                "analytics_items_written": sum(n + 1 for ok, n in chunks if ok),
            })
        reader = analytics_store.AnalyticsStore()
        day = "2026-11-21"
        totals = {ws: reader.read(ws, "D", day, day).get((day, "all"), {}) for ws in WORKSPACES}
        expected = {ws: aggregates.get(analytics.AggregateKey(ws, "D", day, "all"), {}) for ws in WORKSPACES}
        kinds: dict[str, int] = {}
        for name, _, new in log:
            kinds[f"{name}:{new.get('kind')}"] = kinds.get(f"{name}:{new.get('kind')}", 0) + 1
        return {
            "records": records,
            "record_kinds": kinds,
            "conversations": len({new["pk"] for _, _, new in log}),
            "facts": len(facts),
            "aggregate_items_if_one_run": len(aggregates),
            "domain_cpu_ms_per_record": round(domain_ms / records, 4),
            "deliveries": deliveries,
            "redelivery_double_counted": totals != expected,
            "daily_totals_match_in_memory": totals == expected,
            "example_rates": {ws: analytics.rates(totals[ws]) for ws in WORKSPACES[:1]},
            "note": "the analytics aggregates and the dashboard's hourly counters go out together in marked "
                    "transactions: a redelivery finds the markers and writes nothing",
        }
    finally:
        moto.stop()
