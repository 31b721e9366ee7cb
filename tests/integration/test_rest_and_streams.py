"""The REST API through the local gateway, and the stream pollers."""

from __future__ import annotations

import time

import pytest
import requests

from .conftest import chat

pytestmark = pytest.mark.integration


def test_health(stack):
    response = requests.get(f"{stack.api_url}/health", timeout=10)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_anonymous_visitor_token_connects(world, stack):
    response = requests.post(f"{stack.api_url}/workspaces/{world.workspace}/visitor-tokens", json={"name": "Guest"},
                             timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["workspace"] == world.workspace and body["customerId"].startswith("v_")
    socket = world.connect(body["token"])
    reply = socket.request({"action": "message", "clientMessageId": "m1", "text": "hi"}, type="ack")
    assert reply["seq"] == 1


@pytest.mark.parametrize("workspace, status", [("no-such-workspace", 404), ("Bad_WS!", 404)])
def test_visitor_token_for_unknown_workspace(stack, workspace, status):
    response = requests.post(f"{stack.api_url}/workspaces/{workspace}/visitor-tokens", json={}, timeout=10)
    assert response.status_code == status
    assert response.json()["error"]["code"] == "not_found"


def test_visitor_token_rejects_bad_body(world, stack):
    response = requests.post(f"{stack.api_url}/workspaces/{world.workspace}/visitor-tokens",
                             json={"name": "x" * 81}, timeout=10)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["details"][0]["field"].endswith("name")


def test_message_history_over_rest(world, stack):
    _, _, conversation_id = chat(world, messages=4)
    url = f"{stack.api_url}/conversations/{conversation_id}/messages"
    auth = {"Authorization": "Bearer " + world.token("visitor", "cust-1")}
    page = requests.get(url, params={"afterSeq": 0, "limit": 3}, headers=auth, timeout=10).json()
    assert [m["seq"] for m in page["items"]] == [1, 2, 3] and page["nextAfterSeq"] == 3
    rest = requests.get(url, params={"afterSeq": 3}, headers=auth, timeout=10).json()
    assert rest["items"][0]["seq"] == 4 and rest["nextAfterSeq"] is None
    agent_auth = {"Authorization": "Bearer " + world.token("agent", "agent-1")}
    assert requests.get(url, headers=agent_auth, timeout=10).status_code == 200

    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer nonsense"}, timeout=10).status_code == 401
    stranger = {"Authorization": "Bearer " + world.token("visitor", "cust-2")}
    response = requests.get(url, headers=stranger, timeout=10)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    other_ws = {"Authorization": "Bearer " + world.token("visitor", "cust-1", workspace="elsewhere")}
    assert requests.get(url, headers=other_ws, timeout=10).status_code == 404
    assert requests.get(url, params={"afterSeq": -1}, headers=auth, timeout=10).status_code == 422
    assert requests.get(url, params={"limit": 10_000}, headers=auth, timeout=10).status_code == 422


def test_unknown_route_is_404_not_500(stack, world):
    # as on AWS: any path that is not a token route needs an integrator key first ({proxy+} requires one)
    response = requests.get(f"{stack.api_url}/nothing/here", timeout=10)
    assert response.status_code == 403 and response.json() == {"message": "Forbidden"}
    world.agent("ada", "Ada", role="admin")
    key = requests.post(f"{stack.api_url}/workspaces/{world.workspace}/api-keys", json={"name": "t"}, timeout=10,
                        headers={"Authorization": f"Bearer {world.token('agent', 'ada')}"}).json()["key"]
    response = requests.get(f"{stack.api_url}/nothing/here", headers={"x-api-key": key}, timeout=10)
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_stream_handler_aggregates_counters(world, stack):
    from kefu import wiring

    chat(world, messages=3)
    metrics = wiring.metrics_store()
    deadline = time.monotonic() + 15
    while True:
        counters = metrics.counters(world.workspace)
        totals = {}
        for key, value in counters.items():
            name = key.split("#", 1)[1]
            totals[name] = totals.get(name, 0) + value
        if totals.get("messages.customer") == 4 and totals.get("conversations.opened") == 1:
            break
        assert time.monotonic() < deadline, f"counters did not arrive: {totals} {[(p.delivered, p.is_alive()) for p in stack.pollers]} {counters}"
        time.sleep(0.2)
    assert totals["messages.system"] == 1
