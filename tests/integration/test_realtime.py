"""Customers and agents over real WebSocket connections to the local stack."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .conftest import chat, open_conversation

pytestmark = pytest.mark.integration


def status_of_refusal(world, token):
    with pytest.raises(InvalidStatus) as info:
        world.connect(token)
    return info.value.response.status_code


def test_connections_without_a_valid_token_are_refused(world):
    world.agent("agent-1")
    assert status_of_refusal(world, "") == 401
    assert status_of_refusal(world, "not-a-token") == 401
    forged = world.token("visitor", "cust-1")[:-4] + "AAAA"
    assert status_of_refusal(world, forged) == 401
    assert status_of_refusal(world, world.token("agent", "nobody")) == 403  # no such agent in the workspace
    assert status_of_refusal(world, world.token("agent", "agent-1", workspace="other-ws")) == 403
    assert status_of_refusal(world, world.token("visitor", "cust-1", workspace="no-such-ws")) == 403


def test_exchange_ack_and_fan_out_to_two_tabs(world):
    world.agent("agent-1")
    agent = world.agent_socket("agent-1")
    tab1, tab2 = world.customer("cust-1"), world.customer("cust-1")
    conversation_id = open_conversation(world, tab1, agent)
    # the agent's reply reaches both tabs; the agent gets the ack
    ack = agent.request({"action": "message", "conversationId": conversation_id, "clientMessageId": "r1",
                         "text": "您好，我来查一下"}, type="ack")
    assert ack["conversationId"] == conversation_id and ack["clientMessageId"] == "r1"
    for tab in (tab1, tab2):
        frame = tab.expect(type="message", seq=ack["seq"])
        assert frame["sender"] == {"role": "agent", "id": "agent-1", "name": "Agent One"}
        assert frame["text"] == "您好，我来查一下" and frame["createdAt"].endswith("Z")
    # a customer message from tab 2 reaches the agent and tab 1, and is acked to tab 2 only
    ack2 = tab2.request({"action": "message", "conversationId": conversation_id, "clientMessageId": "m2",
                         "text": "谢谢"}, type="ack")
    assert ack2["seq"] == ack["seq"] + 1
    assert agent.expect(type="message", seq=ack2["seq"])["sender"]["role"] == "customer"
    assert tab1.expect(type="message", seq=ack2["seq"])["clientMessageId"] == "m2"
    assert not [f for f in tab2.quiet(0.5) if f.get("seq") == ack2["seq"]]


def test_customer_without_conversation_id_continues_the_open_one(world):
    world.agent("agent-1")
    agent = world.agent_socket("agent-1")
    customer = world.customer("cust-1")
    conversation_id = open_conversation(world, customer, agent)
    ack = customer.request({"action": "message", "clientMessageId": "m2", "text": "again"}, type="ack")
    assert ack["conversationId"] == conversation_id


def test_reconnect_and_sync_gets_exactly_what_was_missed(world):
    world.agent("agent-1")
    agent = world.agent_socket("agent-1")
    customer = world.customer("cust-1")
    conversation_id = open_conversation(world, customer, agent)
    last_seen = customer.request({"action": "message", "conversationId": conversation_id,
                                  "clientMessageId": "m2", "text": "one more"}, type="ack")["seq"]
    customer.close()
    missed = [agent.request({"action": "message", "conversationId": conversation_id, "clientMessageId": f"r{i}",
                             "text": f"reply {i}"}, type="ack")["seq"] for i in range(3)]
    again = world.customer("cust-1")
    reply = again.request({"action": "sync", "conversationId": conversation_id, "afterSeq": last_seen}, type="sync")
    assert [m["seq"] for m in reply["messages"]] == missed
    assert [m["text"] for m in reply["messages"]] == ["reply 0", "reply 1", "reply 2"]
    assert reply["lastSeq"] == missed[-1] and reply["hasMore"] is False
    # the new connection is live again
    seq = agent.request({"action": "message", "conversationId": conversation_id, "clientMessageId": "r9",
                         "text": "still there?"}, type="ack")["seq"]
    assert again.expect(type="message", seq=seq)["text"] == "still there?"


def test_resend_is_idempotent(world):
    world.agent("agent-1")
    agent = world.agent_socket("agent-1")
    customer = world.customer("cust-1")
    conversation_id = open_conversation(world, customer, agent)
    frame = {"action": "message", "conversationId": conversation_id, "clientMessageId": "same", "text": "hello"}
    first = customer.request(frame, type="ack")
    second = customer.request(frame, type="ack")
    assert first == second
    agent.expect(type="message", seq=first["seq"])
    assert not [f for f in agent.quiet(0.5) if f.get("clientMessageId") == "same"]
    history = customer.request({"action": "sync", "conversationId": conversation_id, "afterSeq": 0}, type="sync")
    assert [m["clientMessageId"] for m in history["messages"]].count("same") == 1


def test_typing_reaches_the_other_side(world):
    world.agent("agent-1")
    agent = world.agent_socket("agent-1")
    customer = world.customer("cust-1")
    conversation_id = open_conversation(world, customer, agent)
    customer.send({"action": "typing", "conversationId": conversation_id})
    assert agent.expect(type="typing")["sender"]["id"] == "cust-1"


def test_transfer_to_another_agent(world):
    world.agent("agent-1")
    world.agent("agent-2", "Agent Two")
    first, second = world.agent_socket("agent-1"), world.agent_socket("agent-2")
    customer = world.customer("cust-1")
    ack = customer.request({"action": "message", "clientMessageId": "m1", "text": "help"}, type="ack")
    conversation_id = ack["conversationId"]
    owner, other = (first, second) if _assigned_to(first, conversation_id) else (second, first)
    other_id = "agent-2" if owner is first else "agent-1"
    reply = owner.request({"action": "handoff", "conversationId": conversation_id, "to": {"agentId": other_id},
                           "note": "VIP, refund pending"}, type="handoff")
    assert reply["status"] == "transferred"
    assigned = other.expect(type="assigned", conversationId=conversation_id)
    assert assigned["note"] == "VIP, refund pending" and assigned["history"][0]["text"] == "help"
    assert "joined" in customer.expect(type="message", match=lambda f: f["sender"]["role"] == "system"
                                       and "Two" in f["text"] or "One" in f["text"])["text"]


def _assigned_to(socket, conversation_id) -> bool:
    try:
        socket.expect(type="assigned", conversationId=conversation_id, timeout=3)
        return True
    except AssertionError:
        return False


# ------------------------------------------------------------ bad input


@pytest.fixture
def talking(world):
    return chat(world)


@pytest.mark.parametrize(
    "frame, code",
    [
        ("this is not json", "malformed_json"),
        ("[1, 2, 3]", "malformed_json"),
        ({"action": "fly"}, "unknown_action"),
        ({"no": "action"}, "unknown_action"),
        ({"action": "message", "text": "missing id"}, "invalid_frame"),
        ({"action": "message", "clientMessageId": "e1", "text": ""}, "invalid_frame"),
        ({"action": "message", "clientMessageId": "e2", "text": "   "}, "invalid_frame"),
        ({"action": "message", "clientMessageId": "e3", "text": "长" * 4001}, "invalid_frame"),
        ({"action": "message", "clientMessageId": "x" * 65, "text": "hi"}, "invalid_frame"),
        ({"action": "sync", "conversationId": "c1", "afterSeq": "zero"}, "invalid_frame"),
        ({"action": "message", "clientMessageId": "e4", "text": "hi", "conversationId": "c_not_mine"}, "not_found"),
        ({"action": "sync", "conversationId": "c_not_mine", "afterSeq": 0}, "not_found"),
        ({"action": "route", "conversationId": "c_not_mine"}, "not_found"),
    ],
)
def test_bad_frames_get_error_frames(talking, frame, code):
    customer, _, _ = talking
    reply = customer.request(frame, type="error")
    assert reply["code"] == code and reply["message"]
    assert "Traceback" not in json.dumps(reply)
    if isinstance(frame, dict) and frame.get("clientMessageId") and len(frame["clientMessageId"]) <= 64:
        assert reply["clientMessageId"] == frame["clientMessageId"]
    # the connection survives and nothing was stored
    ack = customer.request({"action": "message", "clientMessageId": "after-" + code, "text": "still ok"}, type="ack")
    assert ack["seq"] >= 1


def test_frame_over_128_kb_closes_the_connection_like_api_gateway(talking):
    customer, _, _ = talking
    customer.backlog.clear()
    customer.send("x" * (128 * 1024 + 1))
    with pytest.raises(ConnectionClosed) as info:
        customer.expect(type="nothing comes but the close", timeout=5)  # frames still on their way are kept
    assert info.value.rcvd.code == 1009


def test_replies_echo_the_request_id(talking):
    customer, _, conversation_id = talking
    reply = customer.request({"action": "sync", "conversationId": "c_nope", "afterSeq": 0, "requestId": "q-1"},
                             type="error")
    assert reply["requestId"] == "q-1" and reply["code"] == "not_found"
    reply = customer.request({"action": "sync", "conversationId": conversation_id, "afterSeq": 0,
                              "requestId": "q-2"}, type="sync")
    assert reply["requestId"] == "q-2"


def test_customer_cannot_use_agent_actions(talking):
    customer, _, conversation_id = talking
    reply = customer.request({"action": "handoff", "conversationId": conversation_id, "to": {"agentId": "agent-1"}},
                             type="error")
    assert reply["code"] == "forbidden"


def test_other_customers_and_workspaces_see_nothing(world, talking, stack, store, signing_key):
    _, agent, conversation_id = talking
    stranger = world.customer("cust-2")
    for frame in ({"action": "sync", "conversationId": conversation_id, "afterSeq": 0},
                  {"action": "message", "conversationId": conversation_id, "clientMessageId": "s1", "text": "hi"},
                  {"action": "typing", "conversationId": conversation_id},
                  {"action": "route", "conversationId": conversation_id}):
        assert stranger.request(frame, type="error")["code"] == "not_found"
    # the same customer id and agent id in another workspace
    from .conftest import World

    elsewhere = World(stack, store, signing_key)
    try:
        elsewhere.agent("agent-1")
        twin, twin_agent = elsewhere.customer("cust-1"), elsewhere.agent_socket("agent-1")
        for socket in (twin, twin_agent):
            reply = socket.request({"action": "sync", "conversationId": conversation_id, "afterSeq": 0}, type="error")
            assert reply["code"] == "not_found"
    finally:
        elsewhere.close()
    assert not [f for f in agent.quiet(0.3) if f.get("clientMessageId") == "s1"]


def test_agent_cannot_write_to_unassigned_conversations(world, talking):
    world.agent("agent-2", "Agent Two")
    intruder = world.agent_socket("agent-2")
    _, _, conversation_id = talking
    reply = intruder.request({"action": "message", "conversationId": conversation_id, "clientMessageId": "x1",
                              "text": "hi"}, type="error")
    assert reply["code"] == "not_found"
    reply = intruder.request({"action": "message", "clientMessageId": "x2", "text": "no conversation"}, type="error")
    assert reply["code"] == "invalid_frame"


# ------------------------------------------------------------ the @connections API and stale connections


def management(stack):
    return boto3.client("apigatewaymanagementapi", endpoint_url=f"{stack.base_url}/_aws/ws", region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def test_management_api_works_with_boto3(world, stack):
    customer = world.customer("cust-1")
    import time

    deadline = time.monotonic() + 5  # the gateway registers the socket just after the handshake's last byte
    while not (ours := [c.id for c in list(stack.gateway.connections.values())
                        if c.authorizer.get("workspace") == world.workspace]):
        assert time.monotonic() < deadline, "connection never registered"
        time.sleep(0.01)
    connection_id = ours[0]
    api = management(stack)
    api.post_to_connection(ConnectionId=connection_id, Data=b'{"type":"hello"}')
    assert customer.expect(type="hello")
    described = api.get_connection(ConnectionId=connection_id)
    assert described["Identity"]["SourceIp"] == "127.0.0.1" and "ConnectedAt" in described
    with pytest.raises(ClientError) as info:
        api.post_to_connection(ConnectionId="AAAAAAAAAAAAAAA=", Data=b"{}")
    assert info.value.response["Error"]["Code"] == "GoneException"
    api.delete_connection(ConnectionId=connection_id)
    customer.backlog.clear()
    with pytest.raises(ConnectionClosed):
        customer.expect(timeout=5)


def test_stale_connection_is_dropped_without_failing_the_send(world, talking, store):
    from kefu.models import ConnectionRef

    customer, agent, conversation_id = talking
    ghost = ConnectionRef("GhostConnId0000=", "customer", "cust-1")
    store.add_connection(_principal(world, "cust-1"), ghost.connection_id, [conversation_id])
    ack = agent.request({"action": "message", "conversationId": conversation_id, "clientMessageId": "r1",
                         "text": "are you there?"}, type="ack")
    assert customer.expect(type="message", seq=ack["seq"])
    _, fanout = store.load_for_fanout(world.workspace, conversation_id)
    assert ghost.connection_id not in {c.connection_id for c in fanout}
    assert ghost.connection_id not in {c.connection_id for c in store.connections_of(world.workspace, "customer", "cust-1")}


def _principal(world, customer_id):
    from kefu.models import Principal

    return Principal(world.workspace, "customer", customer_id)


def test_idle_connections_are_closed_after_the_timeout(world, stack):
    customer = world.customer("cust-idle")
    previous = stack.gateway.idle_timeout_s
    stack.gateway.idle_timeout_s = 1
    customer.backlog.clear()
    try:
        with pytest.raises(ConnectionClosed) as info:
            customer.expect(timeout=12)
        assert info.value.rcvd.code == 1001
    finally:
        stack.gateway.idle_timeout_s = previous


def test_disconnect_takes_the_agent_offline_after_the_grace_period(world, store):
    world.settings(graceSeconds=1)
    world.agent("agent-1")
    agent = world.agent_socket("agent-1")
    assert store.get_agent(world.workspace, "agent-1").presence == "online"
    agent.close()
    import time

    time.sleep(0.3)
    assert store.get_agent(world.workspace, "agent-1").presence == "online"  # still within the grace period
    deadline = time.monotonic() + 10
    while store.get_agent(world.workspace, "agent-1").presence != "offline":
        assert time.monotonic() < deadline, "agent still online after disconnect"
        time.sleep(0.05)


def test_inbox_after_reconnect(world):
    world.agent("agent-1")
    agent = world.agent_socket("agent-1")
    customer = world.customer("cust-1", name="王小明")
    conversation_id = open_conversation(world, customer, agent)
    agent.close()
    again = world.agent_socket("agent-1")
    inbox = again.request({"action": "inbox"}, type="inbox")
    assert [(c["conversationId"], c["customer"]["name"]) for c in inbox["conversations"]] == [(conversation_id, "王小明")]


def test_concurrent_senders_get_unique_contiguous_seqs(world):
    world.agent("agent-1")
    agent = world.agent_socket("agent-1")
    tab1, tab2 = world.customer("cust-1"), world.customer("cust-1")
    conversation_id = open_conversation(world, tab1, agent)
    senders = {"a": agent, "t1": tab1, "t2": tab2}
    for i in range(8):  # fire without waiting: the gateway runs these concurrently, as Lambda would
        for name, socket in senders.items():
            socket.send({"action": "message", "conversationId": conversation_id, "clientMessageId": f"{name}-{i}",
                         "text": f"{name} {i}"})
    seqs = []
    for name, socket in senders.items():
        for i in range(8):
            seqs.append(socket.expect(type="ack", clientMessageId=f"{name}-{i}", timeout=30)["seq"])
    assert sorted(seqs) == list(range(min(seqs), min(seqs) + 24))
    history = agent.request({"action": "sync", "conversationId": conversation_id, "afterSeq": 0}, type="sync")
    assert [m["seq"] for m in history["messages"]] == list(range(1, max(seqs) + 1))


def test_the_per_message_read_stays_small(world, store):
    """The Query each message makes returns META and the fan-out list only, however long the conversation."""
    from kefu.adapters.dynamodb import ConversationItem, conv_pk

    _, _, conversation_id = chat(world, messages=10)
    items = list(ConversationItem.query(conv_pk(world.workspace, conversation_id),
                                        ConversationItem.sk.between("CONN#", "META")))
    assert sorted(type(i).__name__ for i in items) == ["FanoutItem", "FanoutItem", "MetaItem"]
