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


def test_the_nps_question_when_the_workspace_asks_it_reaches_the_metrics(world):
    """The survey setting (off by default) reaches the widget in the closed frame; a survey with an nps answer is
    stored once on the conversation and counted in GET /metrics (NPS = % promoters - % detractors)."""
    import requests

    world.agent("agent-1")
    world.agent("boss", role="admin")
    admin = {"Authorization": f"Bearer {world.token('agent', 'boss')}"}
    survey = f"{world.stack.api_url}/workspaces/{world.workspace}/survey"
    assert requests.get(survey, headers=admin, timeout=10).json() == {"nps": False}
    refused = requests.put(survey, json={"nps": "yes"}, headers=admin, timeout=10)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request"
    agent = world.agent_socket("agent-1")

    # off: the closed frame says so; a survey of stars only counts no NPS
    first = world.customer("cust-1")
    c1 = open_conversation(world, first, agent)
    agent.request({"action": "close", "conversationId": c1}, type="closed")
    assert first.expect(type="closed", conversationId=c1)["survey"] == {"csat": True, "nps": False}
    first.request({"action": "csat", "conversationId": c1, "score": 3}, type="csat")

    put = requests.put(survey, json={"nps": True}, headers=admin, timeout=10)
    assert put.status_code == 200 and put.json() == {"nps": True}
    answers = {"cust-2": (5, 10), "cust-3": (4, 9), "cust-4": (2, 3)}  # two promoters, one detractor: NPS 33.3
    for customer_id, (score, nps) in answers.items():
        customer = world.customer(customer_id)
        cid = open_conversation(world, customer, agent)
        customer.request({"action": "close", "conversationId": cid}, type="closed")
        assert customer.expect(type="closed", conversationId=cid)["survey"] == {"csat": True, "nps": True}
        bad = customer.request({"action": "csat", "conversationId": cid, "score": score, "nps": "10"}, type="error")
        assert bad["code"] == "invalid_frame" and bad["details"][0]["field"] == "nps"
        reply = customer.request({"action": "csat", "conversationId": cid, "score": score, "nps": nps}, type="csat")
        assert reply["nps"] == nps and reply["status"] == "received"
        again = customer.request({"action": "csat", "conversationId": cid, "score": score, "nps": 0}, type="error")
        assert again["code"] == "conflict"  # a second survey, as for the stars
        assert world.store.get_conversation(world.workspace, cid).csat["nps"] == nps

    store = _reader()
    done = wait_for(lambda: _today(store, world.workspace), lambda c: c.get("csatCount") == 4, timeout=60)
    assert (done["npsCount"], done["npsPromoters"], done["npsDetractors"]) == (3, 2, 1) and "npsPassives" not in done
    assert (done["nps10"], done["nps9"], done["nps3"]) == (1, 1, 1)
    world.agent("boss-2", role="supervisor")
    week = requests.get(f"{world.stack.api_url}/workspaces/{world.workspace}/metrics",
                        headers={"Authorization": f"Bearer {world.token('agent', 'boss-2')}"}, timeout=10).json()
    total = week["total"]
    assert total["npsCount"] == 3 and total["nps"] == pytest.approx(100 / 3)
    assert (total["npsPromoters"], total["npsPassives"], total["npsDetractors"]) == (2, 0, 1)
    assert total["npsDistribution"]["10"] == 1 and sum(total["npsDistribution"].values()) == 3
    assert week["series"][-1]["npsCount"] == 3 and total["csatAvg"] == pytest.approx(14 / 4)
    mine = requests.get(f"{world.stack.api_url}/workspaces/{world.workspace}/metrics",
                        params={"agent": "agent-1"},
                        headers={"Authorization": f"Bearer {world.token('agent', 'boss-2')}"}, timeout=10).json()
    assert mine["total"]["npsCount"] == 3


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
