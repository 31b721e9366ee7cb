"""Routing, the queue and presence on the local stack, with real WebSocket clients."""

from __future__ import annotations

import threading
import time

import pytest
import requests

from .conftest import open_conversation

pytestmark = pytest.mark.integration


def first_message(customer, text="你好") -> str:
    return customer.request({"action": "message", "clientMessageId": "m1", "text": text}, type="ack")["conversationId"]


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout} s"
        time.sleep(0.05)


def test_hundreds_of_simultaneous_route_requests_never_overfill_an_agent(world, store):
    """Three agents with seven seats; 150 customers ask at the same instant."""
    seats = {"a1": 3, "a2": 2, "a3": 2}
    for agent_id, seats_of in seats.items():
        world.agent(agent_id, max_concurrent=seats_of)
    agents = {agent_id: world.agent_socket(agent_id) for agent_id in seats}
    customers = [world.customer(f"c{i:03d}") for i in range(150)]
    start = threading.Barrier(len(customers))
    replies: dict[int, dict] = {}

    def ask(i):
        start.wait()
        replies[i] = customers[i].request({"action": "message", "clientMessageId": "m1", "text": "在吗"}, type="ack",
                                         timeout=90)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(customers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(replies) == 150

    loads = {a.id: a.load for a in store.list_agents(world.workspace)}
    assert loads == seats  # full, never beyond
    for agent_id, socket in agents.items():
        assigned = {socket.expect(type="assigned")["conversationId"] for _ in range(seats[agent_id])}
        assert len(assigned) == seats[agent_id]
        assert not [f for f in socket.quiet(0.3) if f["type"] == "assigned"]  # and not one more
        for conversation_id in assigned:
            owner = store.get_conversation(world.workspace, conversation_id)
            assert owner.agent_id == agent_id and owner.routing["strategy"] == "least_busy"
    queue = store.queue_entries(world.workspace)
    assert len(queue) == 150 - sum(seats.values())
    queued = {e.conversation_id for e in queue}
    assert len(queued) == len(queue)
    # every waiting customer was told its place in line
    for customer, reply in ((customers[i], replies[i]) for i in range(150)):
        if reply["conversationId"] in queued:
            assert 1 <= customer.expect(type="queue", timeout=20)["position"] <= len(queue)


def test_closing_hands_the_seat_to_the_head_of_the_queue(world, store):
    world.agent("agent-1", max_concurrent=1)
    agent = world.agent_socket("agent-1")
    first, second, third = world.customer("c1"), world.customer("c2"), world.customer("c3")
    conversation_1 = open_conversation(world, first, agent)
    conversation_2, conversation_3 = first_message(second), first_message(third)
    assert second.expect(type="queue")["position"] == 1
    waiting = third.expect(type="queue")
    assert waiting["position"] == 2 and waiting["estimatedWaitSeconds"] > 0
    closed = agent.request({"action": "close", "conversationId": conversation_1}, type="closed")
    assert closed["resolved"] is True
    assert first.expect(type="closed")["by"]["id"] == "agent-1"
    assert agent.expect(type="assigned")["conversationId"] == conversation_2
    assert second.expect(type="routed")["status"] == "assigned"
    assert "joined" in second.expect(type="message", match=lambda f: f["sender"]["role"] == "system")["text"]
    assert third.expect(type="queue")["position"] == 1  # moved up, and was told
    assert store.get_agent(world.workspace, "agent-1").load == 1
    # the closed conversation takes no more messages; the customer's next message opens a new one
    refused = first.request({"action": "message", "conversationId": conversation_1, "clientMessageId": "late",
                             "text": "one more thing"}, type="error")
    assert refused["code"] == "conversation_closed"
    assert first_message(first, "新问题") not in (conversation_1, conversation_2, conversation_3)


def test_vip_first_and_the_decision_is_recorded(world, store):
    world.agent("agent-1", max_concurrent=1)
    agent = world.agent_socket("agent-1")
    busy = open_conversation(world, world.customer("c0"), agent)
    regular = first_message(world.customer("c1"))
    vip_socket = world.customer("c2", tags=["vip"])
    vip = first_message(vip_socket)
    assert vip_socket.expect(type="queue")["position"] == 1
    agent.request({"action": "close", "conversationId": busy}, type="closed")
    assigned = agent.expect(type="assigned")
    assert assigned["conversationId"] == vip and assigned["priority"] == 10
    decision = store.get_conversation(world.workspace, vip).routing
    assert decision["chosen"] == "agent-1" and decision["priority"] == 10
    assert decision["candidates"][0]["agentId"] == "agent-1" and "least busy" in decision["reason"]
    assert store.get_conversation(world.workspace, regular).status == "queued"


def test_skill_groups_transfer_and_fallback(world, store):
    world.settings(strategy="skill_match", fallbackGroup="售后")
    world.agent("tech", groups=("技术",), languages=("zh",))
    world.agent("sales", groups=("售后",), languages=("zh", "en"))
    tech, sales = world.agent_socket("tech"), world.agent_socket("sales")
    customer = world.customer("c1")
    # the widget's topic picker: the first message names the group and language it needs
    opened = customer.request({"action": "message", "clientMessageId": "m1", "text": "Refund please",
                               "group": "售后", "language": "zh"}, type="ack")
    conversation = opened["conversationId"]
    assert sales.expect(type="assigned")["conversationId"] == conversation
    decision = store.get_conversation(world.workspace, conversation).routing
    assert decision["strategy"] == "skill_match" and decision["language"] == "zh"
    reply = sales.request({"action": "handoff", "conversationId": conversation, "to": {"group": "技术"},
                           "note": "路由器坏了"}, type="handoff")
    assert reply["status"] == "transferred" and reply["to"]["agentId"] == "tech"
    assigned = tech.expect(type="assigned", conversationId=conversation)
    assert assigned["note"] == "路由器坏了" and assigned["history"][0]["text"] == "Refund please"
    assert sales.expect(type="unassigned")["conversationId"] == conversation
    assert (store.get_agent(world.workspace, "sales").load, store.get_agent(world.workspace, "tech").load) == (0, 1)
    tech.close()  # nobody of 技术 has a console open now
    wait_for(lambda: store.get_agent(world.workspace, "tech").connections == 0, what="tech disconnected")
    other = world.customer("c2")
    routed = other.request({"action": "message", "clientMessageId": "m1", "text": "网络连不上", "group": "技术"},
                           type="ack")["conversationId"]
    assert sales.expect(type="assigned", conversationId=routed)
    assert "fallback from 技术" in store.get_conversation(world.workspace, routed).routing["reason"]
    unknown = world.customer("c3").request({"action": "message", "clientMessageId": "m1", "text": "hi",
                                            "group": "没有这个组"}, type="error")
    assert unknown["code"] == "not_found"


def test_agent_gone_past_the_grace_period_conversations_go_back_to_routing(world, store):
    world.settings(graceSeconds=1)
    world.agent("leaver", max_concurrent=2)
    world.agent("stayer", max_concurrent=2)
    leaver = world.agent_socket("leaver")
    customer = world.customer("c1")
    conversation = open_conversation(world, customer, leaver)
    customer.request({"action": "message", "conversationId": conversation, "clientMessageId": "m2",
                      "text": "订单号 12345"}, type="ack")
    stayer = world.agent_socket("stayer")
    leaver.close()
    assigned = stayer.expect(type="assigned", conversationId=conversation, timeout=15)
    said = [m["text"] for m in assigned["history"] if m["sender"]["role"] == "customer"]
    assert said == ["你好，我的订单还没到", "订单号 12345"]  # history kept
    assert store.get_agent(world.workspace, "leaver").presence == "offline"
    assert store.get_agent(world.workspace, "leaver").load == 0
    texts = [customer.expect(type="message", match=lambda f: f["sender"]["role"] == "system" and "offline" in f["text"])]
    assert texts


def test_a_quick_reconnect_keeps_everything(world, store):
    world.settings(graceSeconds=2)
    world.agent("agent-1")
    agent = world.agent_socket("agent-1")
    customer = world.customer("c1")
    conversation = open_conversation(world, customer, agent)
    agent.close()
    again = world.agent_socket("agent-1")
    time.sleep(3)  # past the grace period
    assert store.get_agent(world.workspace, "agent-1").presence == "online"
    assert store.get_conversation(world.workspace, conversation).agent_id == "agent-1"
    customer.request({"action": "message", "conversationId": conversation, "clientMessageId": "m2", "text": "在吗"},
                     type="ack")
    assert again.expect(type="message", match=lambda f: f["text"] == "在吗")


def test_customer_who_leaves_the_queue_is_abandoned(world, store, stack):
    world.settings(graceSeconds=1)
    customer = world.customer("c1")
    conversation = first_message(customer)
    customer.expect(type="queue")
    customer.close()
    wait_for(lambda: store.get_conversation(world.workspace, conversation).status == "closed", timeout=15,
             what="abandoned")
    assert store.get_conversation(world.workspace, conversation).close_reason == "abandoned:left"
    assert store.queue_entries(world.workspace) == []
    from kefu import wiring

    counters = wiring.metrics_store().counters(world.workspace)
    assert sum(v for k, v in counters.items() if k.endswith("#queue.abandoned")) == 1


def test_cancel_and_presence(world, store):
    world.agent("agent-1")
    agent = world.agent_socket("agent-1")
    assert agent.request({"action": "presence", "status": "away"}, type="presence")["status"] == "away"
    customer = world.customer("c1")
    conversation = first_message(customer)
    assert customer.expect(type="queue")["position"] == 1  # away: takes nothing new
    assert customer.request({"action": "cancel", "conversationId": conversation}, type="cancelled")["status"] == "closed"
    again = first_message(customer, "还是想问一下")
    customer.expect(type="queue", conversationId=again)
    agent.request({"action": "presence", "status": "online"}, type="presence")
    assert agent.expect(type="assigned")["conversationId"] == again


def test_supervisor_sees_the_queue_and_assigns_by_hand(world, store):
    world.agent("boss", role="supervisor", max_concurrent=1)
    world.agent("agent-1", max_concurrent=1)
    boss, agent = world.agent_socket("boss"), world.agent_socket("agent-1")
    boss.request({"action": "presence", "status": "away"}, type="presence")
    open_conversation(world, world.customer("c0"), agent)
    c1 = world.customer("c1")
    waiting = first_message(c1)
    c1.expect(type="queue", conversationId=waiting)  # routing follows the ack
    snapshot = boss.request({"action": "snapshot"}, type="snapshot")
    assert [q["conversationId"] for q in snapshot["queue"]] == [waiting]
    states = {a["agentId"]: (a["presence"], a["load"], a["maxConcurrent"]) for a in snapshot["agents"]}
    assert states == {"boss": ("away", 0, 1), "agent-1": ("online", 1, 1)}
    refused = boss.request({"action": "assign", "conversationId": waiting, "agentId": "agent-1"}, type="error")
    assert refused["code"] == "no_agent_available" and "1/1" in refused["message"]
    boss.request({"action": "presence", "status": "online"}, type="presence")
    boss.expect(type="assigned", conversationId=waiting)  # coming online drained the queue to the boss


def test_agents_take_waiting_conversations_for_themselves(world, store):
    world.agent("agent-1", max_concurrent=1)
    world.agent("agent-2", max_concurrent=2)
    world.agent("billing", max_concurrent=2, groups=("账单",))
    one, two = world.agent_socket("agent-1"), world.agent_socket("agent-2")
    billing = world.agent_socket("billing")
    for agent in (two, billing):  # away: nothing arrives by itself, but they may take a conversation
        agent.request({"action": "presence", "status": "away"}, type="presence")
    open_conversation(world, world.customer("c0"), one)  # agent-1 is full
    c1 = world.customer("c1")
    waiting = first_message(c1)
    c1.expect(type="queue", conversationId=waiting)
    queue = two.request({"action": "snapshot"}, type="snapshot")["queue"]
    assert [q["conversationId"] for q in queue] == [waiting] and queue[0]["position"] == 1
    # not for someone else, not when full
    assert two.request({"action": "assign", "conversationId": waiting, "agentId": "agent-1"},
                       type="error")["code"] == "forbidden"
    assert one.request({"action": "assign", "conversationId": waiting, "agentId": "agent-1"},
                       type="error")["code"] == "no_agent_available"
    taken = two.request({"action": "assign", "conversationId": waiting, "agentId": "agent-2"}, type="assign")
    assert taken["status"] == "assigned"
    two.expect(type="assigned", conversationId=waiting)
    c1.expect(type="routed", conversationId=waiting, status="assigned")
    assert store.get_conversation(world.workspace, waiting).agent_id == "agent-2"
    assert store.get_agent(world.workspace, "agent-2").presence == "away"  # taking one changes no presence
    assert store.queue_entries(world.workspace) == []
    assert two.request({"action": "assign", "conversationId": waiting, "agentId": "agent-2"},
                       type="error")["code"] == "conflict"  # not waiting any more
    # a conversation waiting for a group is taken by a member of it only
    c2 = world.customer("c2")
    grouped = c2.request({"action": "message", "clientMessageId": "m1", "text": "发票开错了", "group": "账单"},
                         type="ack")["conversationId"]
    assert c2.expect(type="queue", conversationId=grouped)["queue"] == "账单"
    assert two.request({"action": "assign", "conversationId": grouped, "agentId": "agent-2"},
                       type="error")["code"] == "forbidden"
    billing.request({"action": "assign", "conversationId": grouped, "agentId": "billing"}, type="assign")
    billing.expect(type="assigned", conversationId=grouped)


@pytest.mark.parametrize("role_frame, code", [
    ({"action": "presence", "status": "online"}, "forbidden"),  # from a customer
    ({"action": "snapshot"}, "forbidden"),
    ({"action": "assign", "conversationId": "c_x", "agentId": "agent-1"}, "forbidden"),
    ({"action": "presence", "status": "sleeping"}, "invalid_frame"),
    ({"action": "route", "conversationId": "c_x", "group": "no spaces allowed"}, "invalid_frame"),
    ({"action": "close", "conversationId": "c_not_mine"}, "not_found"),
    ({"action": "cancel", "conversationId": "c_not_mine"}, "not_found"),
    ({"action": "offline_form", "name": "", "contact": "x", "question": "y"}, "invalid_frame"),
])
def test_customers_get_clear_errors(world, role_frame, code):
    customer = world.customer("c1")
    assert customer.request(role_frame, type="error")["code"] == code


def test_agents_get_clear_errors(world, store):
    world.agent("agent-1")
    world.agent("agent-2")
    one, two = world.agent_socket("agent-1"), world.agent_socket("agent-2")
    customer = world.customer("c1")
    conversation = first_message(customer)
    customer.expect(type="routed", conversationId=conversation, status="assigned")  # routing follows the ack
    owner, other = (one, two) if store.get_conversation(world.workspace, conversation).agent_id == "agent-1" else (two, one)
    seen = other.request({"action": "snapshot"}, type="snapshot")  # the queue, not colleagues' loads
    assert seen["supervisor"] is False and seen["agents"] == [] and seen["queue"] == []
    assert other.request({"action": "assign", "conversationId": conversation, "agentId": "agent-1"},
                         type="error")["code"] == "forbidden"
    assert other.request({"action": "handoff", "conversationId": conversation, "to": {"agentId": "agent-1"}},
                         type="error")["code"] == "forbidden"  # not theirs
    assert other.request({"action": "route", "conversationId": conversation}, type="error")["code"] == "not_found"
    assert owner.request({"action": "handoff", "conversationId": conversation, "to": {"agentId": "nobody"}},
                         type="error")["code"] == "not_found"
    assert owner.request({"action": "handoff", "conversationId": conversation, "to": {"group": "没有这个组"}},
                         type="error")["code"] == "not_found"
    # another workspace's conversation id is just not found
    stranger = world.connect(world.token("agent", "alice", workspace="demo"))  # a supervisor elsewhere
    assert stranger.request({"action": "close", "conversationId": conversation}, type="error")["code"] == "not_found"


def test_outside_business_hours_the_offline_form_is_offered_and_stored(world):
    world.settings(businessHours={"timezone": "Asia/Shanghai", "weekly": {}})  # closed all week
    world.agent("agent-1")
    world.agent_socket("agent-1")
    customer = world.customer("c1")
    conversation = first_message(customer)
    offline = customer.expect(type="offline")
    assert offline["reason"] == "closed_hours" and offline["form"] == ["name", "contact", "question"]
    reply = customer.request({"action": "offline_form", "conversationId": conversation, "name": "张三",
                              "contact": "zhangsan@example.com", "question": "发票怎么开？"}, type="offline_form")
    from kefu import wiring

    stored = wiring.ticket_store().get_ticket(world.workspace, reply["ticketId"])  # a ticket (issue 5)
    assert stored.description == "发票怎么开？" and stored.customer_id == "c1" and stored.source == "offline_form"


def test_admin_rest_validates_profiles_and_settings(world, stack, store):
    world.agent("admin-1", role="admin")
    world.agent("plain", role="agent")
    admin = {"Authorization": f"Bearer {world.token('agent', 'admin-1')}"}
    plain = {"Authorization": f"Bearer {world.token('agent', 'plain')}"}
    base = f"{stack.api_url}/workspaces/{world.workspace}"

    def put(path, body, headers=admin):
        return requests.put(f"{base}{path}", json=body, headers=headers, timeout=10)

    good = {"name": "新人", "groups": ["售后"], "languages": ["zh", "en"], "maxConcurrent": 4}
    assert put("/agents/newbie", good).json()["maxConcurrent"] == 4
    for capacity in (-1, 0, 1000, "lots"):
        response = put("/agents/newbie", {**good, "maxConcurrent": capacity})
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
    assert store.get_agent(world.workspace, "newbie").max_concurrent == 4  # nothing half-written
    assert put("/agents/newbie", good, headers=plain).status_code == 403
    assert requests.get(f"{base}/agents", headers=plain, timeout=10).status_code == 403
    other = requests.get(f"{stack.api_url}/workspaces/demo/agents", headers=admin, timeout=10)
    assert other.status_code == 404
    bad_zone = put("/routing", {"businessHours": {"timezone": "Mars/Olympus"}})
    assert bad_zone.status_code == 422 and "time zone" in bad_zone.json()["error"]["message"]
    assert put("/routing", {"strategy": "random"}).status_code == 422
    assert put("/routing", {"graceSeconds": 0}).status_code == 422
    ok = put("/routing", {"strategy": "round_robin", "groups": {"技术": {"strategy": "skill_match"}}, "graceSeconds": 30})
    assert ok.status_code == 200 and ok.json()["groups"]["技术"]["strategy"] == "skill_match"
    assert store.settings(world.workspace)["strategy"] == "round_robin"
    listed = requests.get(f"{base}/agents", headers=admin, timeout=10).json()["items"]
    assert {a["agentId"] for a in listed} == {"admin-1", "plain", "newbie"}


def test_supervisors_list_the_workspaces_conversations(world, stack, store):
    world.agent("boss", role="supervisor")
    world.agent("agent-1")
    agent = world.agent_socket("agent-1")
    mine = open_conversation(world, world.customer("c1"), agent)
    base = f"{stack.api_url}/workspaces/{world.workspace}/conversations"

    def get(who, **params):
        return requests.get(base, params=params, headers={"Authorization": f"Bearer {world.token('agent', who)}"},
                            timeout=10)

    listed = get("boss", status="assigned").json()["items"]
    assert [(c["conversationId"], c["agent"]["id"]) for c in listed] == [(mine, "agent-1")]
    assert get("boss", status="closed").json()["items"] == []
    assert get("agent-1").status_code == 403  # agents see their own inbox and the queue, not everyone's
    stranger = requests.get(base, headers={"Authorization": f"Bearer {world.token('agent', 'alice', workspace='demo')}"},
                            timeout=10)
    assert stranger.status_code == 404  # another workspace's supervisor
    assert get("boss", cursor="bm90IGEgY3Vyc29y").status_code == 422
    # the dashboard's hourly counters (the stream counts the conversation and its messages)
    metrics = f"{stack.api_url}/workspaces/{world.workspace}/metrics/hourly"
    boss = {"Authorization": f"Bearer {world.token('agent', 'boss')}"}

    seen = {}

    def counted():  # the conversation and its first message may come in different stream batches
        seen.update(requests.get(metrics, headers=boss, timeout=10).json())
        return all(sum(seen["series"].get(name, [])) >= 1 for name in ("conversations.opened", "messages.customer"))

    wait_for(counted, timeout=20, what="the stream's counters")
    body = seen
    assert len(body["hours"]) == 24 and body["series"]["conversations.opened"][-1] >= 1
    assert body["series"]["messages.customer"][-1] >= 1
    plain = {"Authorization": f"Bearer {world.token('agent', 'agent-1')}"}
    assert requests.get(metrics, headers=plain, timeout=10).status_code == 403
    for bad in ({"from": "2026-11-21T05", "to": "2026-11-21T04"}, {"from": "2026-01-01T00", "to": "2026-11-21T00"},
                {"from": "yesterday"}, {"to": "5990-89-40T73"}):  # the last one: found by schemathesis
        refused = requests.get(metrics, params=bad, headers=boss, timeout=10)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request", bad
