"""Analytics aggregates from the conversations stream, on the local stack: real conversations, then a
re-delivered batch that must not be counted twice."""

from __future__ import annotations

import secrets

import pytest
from boto3.dynamodb.types import TypeSerializer

from kefu import wiring
from kefu.models import now_iso

from .conftest import open_conversation, wait_for

pytestmark = pytest.mark.integration


def _reader():
    from kefu.adapters.analytics_store import AnalyticsStore

    return AnalyticsStore()


def _today(store, workspace: str, dimension: str = "all") -> dict:
    day = now_iso()[:10]
    return store.read(workspace, "D", day, day).get((day, dimension), {})


def test_conversations_become_aggregates(world):
    world.agent("agent-1")
    agent = world.agent_socket("agent-1")
    first = world.customer("cust-1")
    c1 = open_conversation(world, first, agent)
    agent.request({"action": "message", "conversationId": c1, "clientMessageId": "r1", "text": "您好"}, type="ack")
    agent.request({"action": "message", "conversationId": c1, "clientMessageId": "r2", "text": "在的"}, type="ack")
    agent.request({"action": "close", "conversationId": c1}, type="closed")
    first.expect(type="closed", conversationId=c1)
    first.request({"action": "csat", "conversationId": c1, "score": 4}, type="csat")
    second = world.customer("cust-2", name="Li Si")
    c2 = open_conversation(world, second, agent)
    agent.request({"action": "close", "conversationId": c2, "resolved": False}, type="closed")
    second.expect(type="closed", conversationId=c2)
    second.request({"action": "csat", "conversationId": c2, "score": 2}, type="csat")

    store = _reader()
    done = wait_for(lambda: _today(store, world.workspace), lambda c: c.get("csatCount") == 2, timeout=60)
    assert done["volume"] == 2 and done["closed"] == 2 and done["resolved"] == 1 and done["fcr"] == 1
    assert done["waitCount"] == 2 and done["handleCount"] == 2 and "abandoned" not in done
    assert done["frtCount"] == 1  # the first of the agent's two replies in c1; none in c2
    assert done["csatSum"] == 6 and done["csat4"] == 1 and done["csat2"] == 1
    mine = _today(store, world.workspace, "agent:agent-1")
    assert mine["closed"] == 2 and mine["csatCount"] == 2 and mine["waitCount"] == 2
    assert _today(store, world.workspace, "channel:web")["volume"] == 2
    from kefu import analytics

    rates = analytics.rates(done)
    assert rates["resolutionRate"] == 0.5 and rates["csatAvg"] == 3.0

    # the same numbers through REST (supervisors), for the workspace and for one agent
    import requests

    world.agent("boss", role="supervisor")
    base = f"{world.stack.api_url}/workspaces/{world.workspace}/metrics"

    def get(who="boss", **params):
        return requests.get(base, params=params, headers={"Authorization": f"Bearer {world.token('agent', who)}"},
                            timeout=10)

    week = get().json()
    assert week["granularity"] == "day" and week["dimension"] == "all" and len(week["series"]) == 7
    assert week["series"][-1]["period"] == now_iso()[:10]
    total = week["total"]
    assert total["volume"] == 2 and total["closed"] == 2 and total["resolutionRate"] == 0.5
    assert total["csatAvg"] == 3.0 and total["csatDistribution"] == {"1": 0, "2": 1, "3": 0, "4": 1, "5": 0}
    assert total["ahtS"] is not None and total["waitP50S"] is not None
    hours = get(granularity="hour", agent="agent-1").json()
    assert len(hours["series"]) == 24 and hours["dimension"] == "agent:agent-1" and hours["total"]["closed"] == 2
    assert get(group="售后").json()["total"]["volume"] == 0  # nobody of that group here
    assert get("agent-1").status_code == 403
    for bad in ({"group": "a", "agent": "b"}, {"from": "2026-11-22", "to": "2026-11-21"},
                {"from": "2025-01-01", "to": "2026-11-21"}, {"to": "2026-99-99"}, {"granularity": "week"}):
        refused = get(**bad)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request", (bad, refused.text)


def _record(seq: int, name: str, old: dict | None, new: dict) -> dict:
    ser = TypeSerializer()
    dynamodb = {"Keys": {"pk": {"S": new["pk"]}, "sk": {"S": new["sk"]}}, "SequenceNumber": str(seq),
                "SizeBytes": 100, "StreamViewType": "NEW_AND_OLD_IMAGES",
                "NewImage": {k: ser.serialize(v) for k, v in new.items()}}
    if old is not None:
        dynamodb["OldImage"] = {k: ser.serialize(v) for k, v in old.items()}
    return {"eventID": secrets.token_hex(8), "eventName": name, "eventVersion": "1.1", "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1", "dynamodb": dynamodb,
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/kefu-conversations/stream/test"}


def test_redelivered_batch_is_not_counted_twice(world, stack):
    ws, now = world.workspace, now_iso()
    base = {"pk": f"{ws}#C#x1", "sk": "META", "kind": "meta", "workspace": ws, "conversationId": "x1",
            "channel": "web", "status": "open", "openedAt": now, "updatedAt": now, "group": "sales"}
    assigned = dict(base, status="assigned", agentId="a9", assignedAt=now)
    closed = dict(assigned, status="closed", closedAt=now, closeReason="resolved:agent")
    seq = 10**20 + secrets.randbelow(10**9)  # far from the local stream's own sequence numbers
    event = {"Records": [_record(seq, "INSERT", None, base), _record(seq + 1, "MODIFY", base, assigned),
                         _record(seq + 2, "MODIFY", assigned, closed)]}
    runtime = next(p.runtime for p in stack.pollers if getattr(p, "function", None) and p.function.name == "stream_metrics")
    store = _reader()
    runtime.invoke("stream_metrics", event)
    once = _today(store, ws)
    assert once["volume"] == 1 and once["closed"] == 1 and once["waitCount"] == 1 and once["resolved"] == 1
    hourly = wiring.metrics_store().counters(ws)
    assert sum(v for k, v in hourly.items() if k.endswith("#conversations.opened")) == 1
    runtime.invoke("stream_metrics", event)  # Lambda retries the same batch
    assert _today(store, ws) == once
    assert wiring.metrics_store().counters(ws) == hourly  # the dashboard's hourly counters too
    assert _today(store, ws, "group:sales") == once
