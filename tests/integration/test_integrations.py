"""Integrators: API keys issued per workspace (API Gateway keys in the usage plan, checked by the local
gateway as API Gateway would), and the /integrations routes they open."""

from __future__ import annotations

import time

import pytest
import requests

from .conftest import open_conversation


@pytest.fixture
def admin(world):
    world.agent("ada", "Ada", role="admin")
    world.agent("bob", "Bob")
    return world


def _bearer(world, who: str) -> dict:
    return {"Authorization": f"Bearer {world.token('agent', who)}"}


def issue_key(world, name: str = "crm") -> dict:
    reply = requests.post(f"{world.stack.api_url}/workspaces/{world.workspace}/api-keys", json={"name": name},
                          headers=_bearer(world, "ada"), timeout=10)
    assert reply.status_code == 201, reply.text
    return reply.json()


class Integrator:
    def __init__(self, stack, key: str | None):
        self.base = f"{stack.api_url}/integrations"
        self.headers = {"x-api-key": key} if key else {}

    def __call__(self, method: str, path: str, **kw) -> requests.Response:
        headers = {**self.headers, **kw.pop("headers", {})}
        return requests.request(method, self.base + path, headers=headers, timeout=10, **kw)


def test_admins_issue_list_and_revoke_keys(admin, stack):
    base = f"{stack.api_url}/workspaces/{admin.workspace}/api-keys"
    assert requests.post(base, json={"name": "crm"}, headers=_bearer(admin, "bob"), timeout=10).status_code == 403
    assert requests.post(base, json={"name": ""}, headers=_bearer(admin, "ada"), timeout=10).status_code == 422
    key = issue_key(admin)
    assert key["key"].startswith("kk_") and key["name"] == "crm" and key["createdBy"] == "ada"
    listed = requests.get(base, headers=_bearer(admin, "ada"), timeout=10).json()["items"]
    assert [k["keyId"] for k in listed] == [key["keyId"]] and "key" not in listed[0]  # the value is shown once

    crm = Integrator(stack, key["key"])
    assert crm("GET", "/tickets").status_code == 200
    revoked = requests.delete(f"{base}/{key['keyId']}", headers=_bearer(admin, "ada"), timeout=10)
    assert revoked.json() == {"revoked": key["keyId"]}
    assert requests.delete(f"{base}/{key['keyId']}", headers=_bearer(admin, "ada"), timeout=10).status_code == 404
    time.sleep(2.1)  # the gateway's key list refreshes every 2 s (API Gateway: within seconds)
    assert crm("GET", "/tickets").status_code == 403


def test_without_a_valid_key_the_gateway_refuses(admin, stack):
    for key in (None, "", "kk_not-a-key"):
        reply = Integrator(stack, key)("GET", "/tickets")
        assert reply.status_code == 403 and reply.json() == {"message": "Forbidden"}  # API Gateway's answer


def test_a_key_sees_only_its_own_workspace(admin, world_factory, stack):
    mine = Integrator(stack, issue_key(admin)["key"])
    other_world = world_factory()
    other_world.agent("ada", "Ada", role="admin")
    theirs = Integrator(stack, issue_key(other_world)["key"])

    created = mine("POST", "/tickets", json={"subject": "CRM 同步的工单", "customerId": "crm-42", "priority": "high"})
    assert created.status_code == 201, created.text
    ticket = created.json()
    assert ticket["source"] == "rest" and ticket["workspace"] == admin.workspace
    assert ticket["history"][0]["byRole"] == "system" or ticket["createdBy"]["role"] == "system"
    tid = ticket["ticketId"]
    assert mine("GET", f"/tickets/{tid}").json()["subject"] == "CRM 同步的工单"
    assert theirs("GET", f"/tickets/{tid}").status_code == 404
    assert theirs("PATCH", f"/tickets/{tid}", json={"priority": "low"}).status_code == 404
    assert theirs("POST", f"/tickets/{tid}/comments", json={"text": "x"}).status_code == 404
    assert tid not in [t["ticketId"] for t in theirs("GET", "/tickets").json()["items"]]

    assert mine("POST", f"/tickets/{tid}/comments", json={"text": "已同步"}).status_code == 201
    status = mine("POST", f"/tickets/{tid}/status", json={"status": "resolved"}).json()
    assert status["status"] == "resolved" and status["history"][-1]["byRole"] == "integrator"
    assert mine("POST", "/tickets", json={"subject": ""}).status_code == 422
    assert mine("POST", "/tickets", data="{not json", headers={"Content-Type": "application/json"}).status_code == 422

    # a key is not a user: the console's routes still want a user's token
    reply = requests.get(f"{stack.api_url}/workspaces/{admin.workspace}/tickets",
                         headers={"x-api-key": mine.headers["x-api-key"]}, timeout=10)
    assert reply.status_code == 401


def test_identified_customers_keep_one_profile_across_conversations(admin, stack):
    crm = Integrator(stack, issue_key(admin)["key"])
    issued = crm("POST", "/visitor-tokens", json={"customerId": "crm-7", "name": "钱七", "tags": ["vip"]}).json()
    assert issued["customerId"] == "crm-7" and issued["workspace"] == admin.workspace
    assert crm("POST", "/visitor-tokens", json={"customerId": "bad id!"}).status_code == 422

    agent = admin.agent_socket("bob")
    customer = admin.connect(issued["token"])
    conversation = open_conversation(admin, customer, agent, text="会员积分怎么查")
    profile = crm("GET", "/customers/crm-7").json()
    assert profile["name"] == "钱七" and profile["tags"] == ["vip"] and profile["channels"] == ["web"]
    assert [c["conversationId"] for c in profile["conversations"]] == [conversation]
    assert profile["conversations"][0]["agent"] == {"id": "bob", "name": "Bob"}
    page = crm("GET", f"/conversations/{conversation}/messages", params={"limit": 1}).json()
    assert page["items"][0]["text"] == "会员积分怎么查"
    assert crm("GET", f"/conversations/{conversation}").json()["status"] == "assigned"
    assert crm("GET", "/customers/nobody").status_code == 404
    assert crm("GET", "/conversations/c_nope").status_code == 404


def test_integrators_list_and_close_conversations_and_manage_agents_and_articles(admin, stack, world_factory):
    crm = Integrator(stack, issue_key(admin)["key"])
    agent = admin.agent_socket("bob")
    opened = []
    for i in range(3):
        customer = admin.customer(f"cust-{i}", name=f"客户{i}")
        opened.append(open_conversation(admin, customer, agent, text=f"问题 {i}"))
    seen, cursor = [], None
    while True:
        page = crm("GET", "/conversations", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [c["conversationId"] for c in page["items"]]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert seen == opened[::-1]  # newest first, each once
    assert [c["conversationId"] for c in crm("GET", "/conversations", params={"customerId": "cust-1"}).json()["items"]] \
        == [opened[1]]
    assert crm("GET", "/conversations", params={"status": "closed"}).json()["items"] == []
    assert crm("GET", "/conversations", params={"channel": "wechat"}).json()["items"] == []
    assert crm("GET", "/conversations", params={"cursor": "bm9wZQ"}).status_code == 422

    closed = crm("POST", f"/conversations/{opened[0]}/close", json={"resolved": False})
    assert closed.status_code == 200, closed.text
    assert closed.json()["ticketId"] and agent.expect(type="closed", conversationId=opened[0])
    assert crm("POST", f"/conversations/{opened[0]}/close", json={}).status_code == 409  # already closed
    assert crm("POST", "/conversations/not a valid id/close", json={}).status_code == 404
    assert [c["conversationId"] for c in crm("GET", "/conversations", params={"status": "closed"}).json()["items"]] \
        == [opened[0]]
    other = world_factory()
    other.agent("ada", "Ada", role="admin")
    theirs = Integrator(stack, issue_key(other)["key"])
    assert theirs("GET", "/conversations").json()["items"] == []
    assert theirs("POST", f"/conversations/{opened[1]}/close", json={}).status_code == 404

    # agents and groups (an HR or SSO sync)
    put = crm("PUT", "/agents/dora", json={"name": "Dora", "groups": ["售后", "vip"], "maxConcurrent": 3})
    assert put.status_code == 200 and put.json()["groups"] == ["售后", "vip"]
    assert crm("PUT", "/agents/dora", json={"name": "Dora", "maxConcurrent": 500}).status_code == 422
    assert {a["agentId"] for a in crm("GET", "/agents").json()["items"]} >= {"ada", "bob", "dora"}
    groups = {g["group"]: g for g in crm("GET", "/groups").json()["items"]}
    assert groups["vip"] == {"group": "vip", "agents": 1, "online": 0}

    # the knowledge base
    article = {"lang": "zh", "title": "营业时间", "answer": "每天 9:00–21:00", "questions": ["几点上班", "营业时间"]}
    assert crm("PUT", "/kb/articles/hours", json=article).json()["id"] == "hours"
    assert [a["id"] for a in crm("GET", "/kb/articles").json()["articles"]] == ["hours"]
    assert theirs("GET", "/kb/articles/hours").status_code == 404
    assert crm("DELETE", "/kb/articles/hours").json() == {"deleted": "hours"}
    assert crm("POST", "/kb/ask", json={"text": "x" * 10_001}).status_code == 422


def test_the_local_stack_serves_the_api_reference(stack):
    page = requests.get(f"{stack.base_url}/api-docs", timeout=10)
    assert page.status_code == 200 and "swagger-ui-bundle.js" in page.text and "cdn" not in page.text.lower()
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-ui-standalone-preset.js"):
        assert requests.get(f"{stack.base_url}/api-docs/assets/{asset}", timeout=10).status_code == 200, asset
    assert requests.get(f"{stack.base_url}/api-docs/assets/package.json", timeout=10).status_code == 404
    document = requests.get(f"{stack.base_url}/api-docs/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.1") and "/integrations/tickets" in document["paths"]


def test_an_integrators_sign_on_gets_agent_tokens(admin, world_factory, stack):
    from kefu import tokens

    crm = Integrator(stack, issue_key(admin)["key"])
    issued = crm("POST", "/agent-tokens", json={"agentId": "bob", "ttlSeconds": 3600})
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert body["agentId"] == "bob" and body["role"] == "agent" and body["expiresIn"] == 3600
    claims = tokens.verify(admin.key, body["token"])
    assert (claims.role, claims.id, claims.workspace) == ("agent", "bob", admin.workspace)
    # it signs in: the console's REST calls and its socket
    me = requests.get(f"{stack.api_url}/workspaces/{admin.workspace}/quick-replies",
                      headers={"Authorization": f"Bearer {body['token']}"}, timeout=10)
    assert me.status_code == 200
    socket = admin.connect(body["token"])
    assert socket.request({"action": "presence", "status": "online"}, type="presence")["status"] == "online"
    # only the workspace's own agents, for a shift at most, and never without a key
    assert crm("POST", "/agent-tokens", json={"agentId": "nobody"}).status_code == 404
    other_world = world_factory()
    other_world.agent("stranger", "Stranger")
    assert crm("POST", "/agent-tokens", json={"agentId": "stranger"}).status_code == 404
    assert crm("POST", "/agent-tokens", json={"agentId": "bob", "ttlSeconds": 86400}).status_code == 422
    assert crm("POST", "/agent-tokens", json={"agentId": "bad id!"}).status_code == 422
    assert Integrator(stack, None)("POST", "/agent-tokens", json={"agentId": "bob"}).status_code == 403
