"""Rate limits and size limits (issue 8, abuse) on the local stack, with real WebSocket clients.

The local stack relaxes the message limits (ratelimit.LOCAL_STACK_LIMITS: the benchmark sends faster than a
person); these tests set the environment's limits for their own duration (the handlers run in this process
and read KEFU_RATE_LIMITS on every call), mostly to the production defaults.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from kefu import schema

from .conftest import chat, open_conversation

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def limits(monkeypatch):
    def set_limits(value: str = "default") -> None:
        monkeypatch.setenv(schema.ENV_RATE_LIMITS, value)

    set_limits()
    return set_limits


def _sync(socket, conversation_id) -> list[dict]:
    return socket.request({"action": "sync", "conversationId": conversation_id, "afterSeq": 0,
                           "requestId": f"s-{time.monotonic_ns()}"}, type="sync")["messages"]


def _replies(socket, cmids) -> dict[str, dict]:
    """The direct reply (ack or error) to each of these messages."""
    return {cmid: socket.expect(lambda f: f.get("type") in ("ack", "error"), clientMessageId=cmid, timeout=20)
            for cmid in cmids}


def _send_in_order(socket, conversation_id, cmids, *, text=lambda cmid: cmid) -> int:
    """Like kefu-client.js: one at a time, the next after the ack; rate_limited: wait retryAfter, same id again.
    Returns how many times it had to wait."""
    waits = 0
    for cmid in cmids:
        while True:
            socket.send({"action": "message", "conversationId": conversation_id, "clientMessageId": cmid,
                         "text": text(cmid)})
            reply = _replies(socket, [cmid])[cmid]
            if reply["type"] == "ack":
                break
            assert reply["code"] == "rate_limited", reply
            waits += 1
            time.sleep(reply["retryAfter"])
    return waits


def test_a_burst_over_the_limit_is_refused_with_retry_after_and_stores_nothing_over_it(world, limits):
    customer, agent, conversation_id = chat(world)  # the opening message is the connection's first
    burst = [f"b{i:02d}" for i in range(25)]  # over 10 per 10 s even if the burst straddles two windows
    for cmid in burst:
        customer.send({"action": "message", "conversationId": conversation_id, "clientMessageId": cmid, "text": cmid})
    replies = _replies(customer, burst)
    acked = [c for c, r in replies.items() if r["type"] == "ack"]
    refused = {c: r for c, r in replies.items() if r["type"] == "error"}
    assert refused and len(acked) <= 19 and len(acked) + len(refused) == 25
    for cmid, frame in refused.items():
        assert frame["code"] == "rate_limited" and frame["clientMessageId"] == cmid
        assert isinstance(frame["retryAfter"], int) and 1 <= frame["retryAfter"] <= 10
        assert "seq" not in frame
    stored = [m["clientMessageId"] for m in _sync(customer, conversation_id)]
    assert sorted(c for c in stored if c.startswith("b")) == sorted(acked)  # nothing refused was stored
    # the agent saw exactly the stored ones
    delivered = {f["clientMessageId"] for f in agent.quiet(0.5) if f.get("type") == "message"}
    assert {c for c in delivered if c.startswith("b")} == set(acked)

    # resent after retryAfter, one at a time: each stored exactly once, the resends in their order
    time.sleep(max(f["retryAfter"] for f in refused.values()))
    later = sorted(refused)
    _send_in_order(customer, conversation_id, later)
    messages = _sync(customer, conversation_id)
    cmids = [m["clientMessageId"] for m in messages]
    assert len(cmids) == len(set(cmids))  # nothing twice
    assert sorted(c for c in cmids if c.startswith("b")) == burst  # everything once
    assert [c for c in cmids if c in refused] == later  # in the order resent
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))


def test_sending_in_order_through_the_limit_loses_and_reorders_nothing(world, limits):
    customer, _, conversation_id = chat(world)
    wanted = [f"o{i:02d}" for i in range(14)]
    waits = _send_in_order(customer, conversation_id, wanted)
    assert waits >= 1
    cmids = [m["clientMessageId"] for m in _sync(customer, conversation_id)]
    assert [c for c in cmids if c in wanted] == wanted  # each once, in order


def test_the_limit_spans_a_visitors_connections(world, limits):
    limits('{"customer.connection": "50/10s", "customer.person": "6/1h"}')  # (long windows: no rollover mid-test)
    customer, agent, conversation_id = chat(world)  # 1
    second = world.customer("cust-1")  # the same visitor in another tab
    first_tab = [f"a{i}" for i in range(3)]
    for cmid in first_tab:
        customer.request({"action": "message", "conversationId": conversation_id, "clientMessageId": cmid,
                          "text": cmid}, type="ack")
    replies = []
    for cmid in ("t0", "t1", "t2"):
        second.send({"action": "message", "conversationId": conversation_id, "clientMessageId": cmid, "text": cmid})
        replies.append(_replies(second, [cmid])[cmid])
    assert [r["type"] for r in replies] == ["ack", "ack", "error"]
    assert replies[2]["code"] == "rate_limited" and replies[2]["retryAfter"] >= 1


def test_an_agent_is_not_limited_by_the_customers_bucket(world, limits):
    limits('{"customer.connection": "3/600s", "customer.person": "3/1h", "agent.connection": "10/600s", '
           '"agent.person": "100/1h"}')
    world.agent("agent-1")
    agent = world.agent_socket("agent-1")
    # a customer whose id is the agent's: the buckets differ by role as well
    customer = world.customer("agent-1")
    conversation_id = open_conversation(world, customer, agent)
    for cmid in ("c1", "c2"):
        customer.request({"action": "message", "conversationId": conversation_id, "clientMessageId": cmid,
                          "text": cmid}, type="ack")
    refused = customer.request({"action": "message", "conversationId": conversation_id, "clientMessageId": "c3",
                                "text": "c3"}, type="error")
    assert refused["code"] == "rate_limited"
    for i in range(8):
        agent.request({"action": "message", "conversationId": conversation_id, "clientMessageId": f"ag{i}",
                       "text": f"reply {i}"}, type="ack")


def test_another_workspaces_visitor_with_the_same_id_has_their_own_bucket(world_factory, limits):
    limits('{"customer.connection": "3/600s", "customer.person": "3/1h"}')
    one, two = world_factory(), world_factory()
    customer, _, conversation_id = chat(one, messages=2)  # cust-1: 3 of 3
    refused = customer.request({"action": "message", "conversationId": conversation_id, "clientMessageId": "x",
                                "text": "x"}, type="error")
    assert refused["code"] == "rate_limited"
    _, _, other_conversation = chat(two, messages=2)  # cust-1 of another workspace: 3 of its own 3
    assert other_conversation != conversation_id


def test_the_client_library_keeps_rate_limited_messages_and_resends_them_in_order(world, limits):
    """web/kefu-client.js in Node against the local stack: 15 messages typed at once, over the default
    10 per 10 s; none is marked failed, each is stored once, in the order typed."""
    node = shutil.which("node")
    assert node is not None, "node runs the client library here; make setup needs it for npm ci anyway"
    world.agent("agent-1")
    agent = world.agent_socket("agent-1")
    customer = world.customer("cust-1")
    conversation_id = open_conversation(world, customer, agent)
    customer.close()
    script = f"""
const KefuClient = require({json.dumps(str(ROOT / "web" / "kefu-client.js"))});
const client = new KefuClient({{ url: {json.dumps(world.stack.ws_url)}, token: {json.dumps(world.token("visitor", "cust-1"))},
                                  ackTimeoutMs: 30000 }});
const refusals = [], failed = [], texts = [];
client.onError = (frame) => {{ if (frame.code === "rate_limited") refusals.push(frame.retryAfter); }};
client.onOutbox = (item) => {{ if (item.state === "failed") failed.push(item.error); }};
let sent = false;
client.onStatus = () => {{
  if (client.state !== "open" || sent) return;
  sent = true;
  for (let i = 0; i < 15; i++) texts.push(client.send("n" + String(i).padStart(2, "0"), {json.dumps(conversation_id)}).clientMessageId);
}};
const started = Date.now();
const timer = setInterval(() => {{
  const done = sent && client.outbox.length === 0;
  if (done || failed.length || Date.now() - started > 60000) {{
    clearInterval(timer);
    console.log(JSON.stringify({{ done, refusals, failed, cmids: texts, seconds: (Date.now() - started) / 1000 }}));
    client.close && client.close();
    process.exit(0);
  }}
}}, 100);
client.connect();
"""
    run = subprocess.run([node, "--experimental-websocket", "--no-warnings", "-e", script], capture_output=True,
                         text=True, timeout=90)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["done"] and not result["failed"], result
    assert result["refusals"] and all(1 <= r <= 10 for r in result["refusals"]), result
    messages = _sync(agent, conversation_id)
    texts = [m["text"] for m in messages if m["sender"]["role"] == "customer" and m["text"].startswith("n")]
    assert texts == [f"n{i:02d}" for i in range(15)]  # each once, in the order typed
    assert [m["clientMessageId"] for m in messages if m["text"].startswith("n")] == result["cmids"]


# ---------------------------------------------------------------- $connect


def _status_of(world, token) -> int:
    try:
        world.connect(token)
    except InvalidStatus as refused:
        return refused.response.status_code
    world.sockets.pop().close()
    return 101


def test_a_visitor_reconnecting_in_a_loop_gets_429(world, limits):
    limits('{"connect.person": "5/60s"}')
    token = world.token("visitor", "looper")
    statuses = [_status_of(world, token) for _ in range(11)]  # over 5 per minute even across a minute's end
    assert 429 in statuses and statuses[0] == 101
    assert statuses.count(101) <= 10
    # another visitor (same address, same workspace) still connects
    assert _status_of(world, world.token("visitor", "calm")) == 101


def test_one_address_opening_connections_for_many_visitors_gets_429(world_factory, limits):
    limits('{"connect.person": "20/60s", "connect.source": "6/60s"}')
    world, other = world_factory(), world_factory()
    statuses = [_status_of(world, world.token("visitor", f"v{i}")) for i in range(13)]
    assert 429 in statuses and statuses.count(101) <= 12
    # the address's count is per workspace: another workspace is not refused because of this one
    assert _status_of(other, other.token("visitor", "v0")) == 101


# ---------------------------------------------------------------- sizes


def test_a_frame_too_large_for_any_message_is_refused_with_its_client_message_id(world):
    customer, _, conversation_id = chat(world)
    frame = {"action": "message", "conversationId": conversation_id, "clientMessageId": "huge", "text": "hi",
             "padding": "x" * (70 * 1024)}  # unknown fields are ignored, but not 70 KB of them
    refused = customer.request(frame, type="error")
    assert refused["code"] == "too_large" and refused["clientMessageId"] == "huge"
    assert refused["details"][0]["field"] == "frame"
    assert "huge" not in [m["clientMessageId"] for m in _sync(customer, conversation_id)]
    # just under the limit is parsed as usual (here: refused for its text, with the usual code)
    near = {**frame, "padding": "", "text": "长" * 4001}
    assert customer.request(near, type="error")["code"] == "invalid_frame"


def test_too_many_attachments_are_refused_before_anything_is_checked(world):
    customer, _, conversation_id = chat(world)
    ref = {"key": f"att/{world.workspace}/{conversation_id}/x/a.png", "name": "a.png", "contentType": "image/png",
           "size": 10}
    refused = customer.request({"action": "message", "conversationId": conversation_id, "clientMessageId": "many",
                                "text": "", "attachments": [ref] * 6}, type="error")
    assert refused["code"] == "invalid_frame" and refused["clientMessageId"] == "many"
    assert any(d["field"] == "attachments" for d in refused["details"])
