"""The customer chat's quick replies (kefu.chips) on the local stack: the settings route (public read, admins
write, validated: count, lengths, languages, ids, no markup) and a tapped chip's message over the WebSocket,
tagged in its meta with the chip and the visitor's quick_reply_wording variant (decided by the server)."""

from __future__ import annotations

import pytest
import requests

from kefu import experiments as ab

CHIPS = [{"id": "track-order", "text": {"zh": "查订单", "en": "Track my order"}},
         {"id": "return", "text": {"zh": "退货", "en": "Return an item"}},
         {"id": "human", "text": {"zh": "转人工"}}]
WORDING = [{"id": "a", "weight": 1, "value": {"track-order": "Track my order"}},
           {"id": "b", "weight": 1, "value": {"track-order": "Where is my parcel?"}}]


def _bearer(world, kind: str, who: str) -> dict:
    return {"Authorization": f"Bearer {world.token(kind, who)}"}


def _url(world, path: str) -> str:
    return f"{world.stack.api_url}/workspaces/{world.workspace}/{path}"


def _staff(world) -> dict:
    world.agent("ada", "Ada", role="admin")
    world.agent("sue", "Sue", role="supervisor")
    world.agent("bob", "Bob")
    return _bearer(world, "agent", "ada")


def test_settings_are_public_to_read_and_admins_write(world):
    admin = _staff(world)
    url = _url(world, "customer-quick-replies")
    assert requests.get(url, timeout=10).json() == {"items": []}  # none until an admin sets them
    put = requests.put(url, json={"items": CHIPS}, headers=admin, timeout=10)
    assert put.status_code == 200, put.text
    assert put.json()["items"] == CHIPS
    assert requests.get(url, timeout=10).json() == {"items": CHIPS}  # no token: the chat reads them first
    # everyone but admins: refused, and nothing changes
    for who, status in ((_bearer(world, "agent", "sue"), 403), (_bearer(world, "agent", "bob"), 403),
                        (_bearer(world, "visitor", "cust-1"), 403), ({}, 401)):
        refused = requests.put(url, json={"items": []}, headers=who, timeout=10)
        assert refused.status_code == status, refused.text
    assert requests.get(url, timeout=10).json() == {"items": CHIPS}
    assert requests.get(f"{world.stack.api_url}/workspaces/no-such-shop/customer-quick-replies",
                        timeout=10).status_code == 404
    # surrounding blanks are trimmed
    trimmed = requests.put(url, json={"items": [{"id": "x", "text": {"en": "  Hi  "}}]}, headers=admin, timeout=10)
    assert trimmed.status_code == 200 and trimmed.json()["items"][0]["text"] == {"en": "Hi"}
    assert requests.put(url, json={"items": []}, headers=admin, timeout=10).json() == {"items": []}  # cleared


@pytest.mark.parametrize("items, problem", [
    ([{"id": f"c{i}", "text": {"zh": "问"}} for i in range(7)], "items"),  # at most 6
    ([{"id": "x", "text": {"en": "x" * 41}}], "40"),
    ([{"id": "x", "text": {"en": ""}}], "text"),
    ([{"id": "x", "text": {"en": "   "}}], "non-empty"),
    ([{"id": "x", "text": {}}], "zh and/or en"),
    ([{"id": "x", "text": {"fr": "Bonjour"}}], "text"),
    ([{"id": "x", "text": "查订单"}], "text"),
    ([{"id": "Bad Id", "text": {"zh": "问"}}], "id"),
    ([{"id": "x", "text": {"zh": "问"}}, {"id": "x", "text": {"zh": "答"}}], "every id once"),
    ([{"id": "x", "text": {"en": "<b>Track</b> my order"}}], "markup"),
    ([{"id": "x", "text": {"en": "<img src=x onerror=alert(1)>"}}], "markup"),
    ([{"id": "x", "text": {"en": "Fish &amp; chips"}}], "markup"),
    ([{"id": "x", "text": {"en": "two\nlines"}}], "one line"),
    ([{"id": "x"}], "text"),
])
def test_settings_are_validated(world, items, problem):
    admin = _staff(world)
    url = _url(world, "customer-quick-replies")
    refused = requests.put(url, json={"items": items}, headers=admin, timeout=10)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "invalid_request"
    assert problem in refused.text, refused.text
    assert requests.get(url, timeout=10).json() == {"items": []}  # nothing stored


def test_a_quick_reply_wording_experiment_is_validated(world):
    admin = _staff(world)

    def create(value):
        return requests.post(_url(world, "experiments"), headers=admin, timeout=10, json={
            "name": "chips", "kind": "quick_reply_wording",
            "variants": [{"id": "a", "weight": 1, "value": value}, {"id": "b", "weight": 1, "value": "Track it"}]})

    for good in ("Where is my parcel?", ["Where is my parcel?", "Send it back"], {"track-order": "Where is it?"}):
        assert create(good).status_code == 201, good
    for bad in ("<b>bold</b>", "x" * 41, [], {"Bad Id": "x"}, {"track-order": ""}, 3):
        refused = create(bad)
        assert refused.status_code == 422 and "quick-reply wording" in refused.text, (bad, refused.text)


def _history(world, customer: str, conversation_id: str) -> list[dict]:
    got = requests.get(f"{world.stack.api_url}/conversations/{conversation_id}/messages",
                       headers=_bearer(world, "visitor", customer), timeout=10)
    assert got.status_code == 200, got.text
    return got.json()["items"]


def test_a_tapped_chip_is_tagged_with_the_chip_and_the_visitors_variant(world, world_factory):
    admin = _staff(world)
    # without an experiment (another workspace: the message path caches a workspace's experiments for 15 s)
    other = world_factory()
    plain = other.customer("cust-plain")
    ack = plain.request({"action": "message", "clientMessageId": "q1", "text": "查订单", "quickReply": "track-order"},
                        type="ack")
    first = _history(other, "cust-plain", ack["conversationId"])[0]
    assert first["text"] == "查订单" and first["meta"] == {"quickReply": "track-order"}
    # a running quick_reply_wording experiment: the server adds the visitor's experiment and variant
    created = requests.post(_url(world, "experiments"), headers=admin, timeout=10,
                            json={"name": "chips", "kind": "quick_reply_wording", "variants": WORDING})
    assert created.status_code == 201, created.text
    eid = created.json()["experimentId"]
    started = requests.post(_url(world, f"experiments/{eid}/start"), headers=admin, timeout=10)
    assert started.status_code == 200, started.text
    experiment = ab.Experiment.from_dict(started.json())
    for customer in ("cust-a", "cust-b", "cust-c"):
        variant = ab.assign(experiment, customer)
        socket = world.customer(customer)
        # what the client says about experiments is ignored: the server decides from the customer id
        ack = socket.request({"action": "message", "clientMessageId": "q1", "text": variant.value["track-order"],
                              "quickReply": "track-order", "meta": {"variant": "forged"}, "experiment": "forged"},
                             type="ack")
        typed = socket.request({"action": "message", "conversationId": ack["conversationId"],
                                "clientMessageId": "t1", "text": "还有别的问题"}, type="ack")
        assert typed["seq"] == ack["seq"] + 1
        tapped, plain_text = _history(world, customer, ack["conversationId"])[:2]
        assert tapped["meta"] == {"quickReply": "track-order", "experiment": eid, "variant": variant.id}, tapped
        assert "meta" not in plain_text or not plain_text["meta"]  # typed text: no chip
    # a malformed chip id is refused like any invalid frame, and nothing is stored
    refused = plain.request({"action": "message", "clientMessageId": "q2", "text": "hi", "quickReply": "<b>"},
                            type="error")
    assert refused["code"] == "invalid_frame" and refused.get("clientMessageId") == "q2"
    assert len(_history(other, "cust-plain", first["conversationId"])) == 1


def test_an_agents_message_never_carries_a_chip(world):
    world.agent("agent-1")
    agent = world.agent_socket("agent-1")
    agent.request({"action": "presence", "status": "online"}, type="presence")
    customer = world.customer("cust-1")
    ack = customer.request({"action": "message", "clientMessageId": "o1", "text": "你好"}, type="ack")
    agent.expect(type="assigned", conversationId=ack["conversationId"])
    agent.request({"action": "message", "conversationId": ack["conversationId"], "clientMessageId": "a1",
                   "text": "您好", "quickReply": "track-order"}, type="ack")
    said = _history(world, "cust-1", ack["conversationId"])[-1]
    assert said["text"] == "您好" and not said.get("meta")
