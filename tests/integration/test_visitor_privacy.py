"""Issue 8 on the local stack, with real WebSocket clients: anonymous consultation chosen by the visitor, and a
customer's tokens revoked at erasure.

Anonymous consultation: an identified visitor (the site's token: customer id, name, tags) who chooses to chat
anonymously gets a fresh anonymous visitor token (POST /workspaces/{ws}/visitor-tokens, what the chat does) and
opens the conversation with "anonymous": true; the stored conversation has no name, no tags and a customer id that
is not the site's; the agent sees no name. The site's own token cannot open an anonymous conversation (it would
store the site's id). The REST channel is unaffected.

Erasure: DELETE /workspaces/{ws}/customers/{id} records the erasure; the customer's tokens issued at or before it
are refused at $connect (401) and by the REST routes that take a visitor token, the renewal of an anonymous
visitor's token included; a token issued after it works."""

from __future__ import annotations

import json
import secrets
import time

import pytest
import requests
from kefu import schema, tokens
from kefu.privacy import ERASURE_KEEP_S, customer_digest
from websockets.exceptions import InvalidStatus

from .conftest import wait_for
from .test_privacy import _adm as _admin
from .test_privacy import _api, _h

pytestmark = pytest.mark.integration


def _anonymous_token(world) -> dict:
    """What the chat does when the visitor ticks "chat anonymously": a fresh anonymous visitor token."""
    minted = requests.post(_api(world, "/visitor-tokens"), json={}, timeout=10)
    assert minted.status_code == 200, minted.text
    return minted.json()


def _conversation_items(stack, workspace: str, conversation_id: str) -> list[dict]:
    return stack.client("dynamodb").query(
        TableName=schema.CONVERSATIONS.local_name, KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"{workspace}#C#{conversation_id}"}})["Items"]


def _refusal(world, token: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        world.connect(token)
    return info.value.response.status_code


@pytest.fixture
def desk(world):
    world.agent("agent-1", "Agent One")
    world.agent("admin", "Admin", role="admin")
    # no bot: the conversation goes straight to the agent
    assert requests.put(_api(world, "/bot"), headers=_admin(world), json={"enabled": False}, timeout=10).ok
    return world


# ---------------------------------------------------------------- anonymous consultation


def test_an_identified_visitor_who_chooses_anonymous_leaves_no_identity(desk, stack):
    world = desk
    agent = world.agent_socket("agent-1")
    site_token = world.token("visitor", "site-77", name="Secret Person", tags=["vip-secret"])
    identified = world.connect(site_token)
    # the site's token cannot open an anonymous conversation: it would carry the site's customer id
    refused = identified.request({"action": "message", "clientMessageId": "m0", "text": "hi", "anonymous": True},
                                 type="error")
    assert refused["code"] == "invalid_frame" and refused["clientMessageId"] == "m0"
    assert "anonymous" in refused["message"]
    assert world.store.open_conversation_id(world.workspace, "site-77") is None
    # nor may "anonymous" be anything but a boolean, nor name an existing conversation
    bad = identified.request({"action": "message", "clientMessageId": "m0", "text": "hi", "anonymous": "true"},
                             type="error")
    assert bad["code"] == "invalid_frame" and bad["details"][0]["field"] == "anonymous"

    # the chat's way: a fresh anonymous visitor, and the first message says anonymous
    fresh = _anonymous_token(world)
    assert fresh["customerId"] != "site-77" and fresh["customerId"].startswith("v_")
    chat = world.connect(fresh["token"])
    ack = chat.request({"action": "message", "clientMessageId": "a1", "text": "我想匿名问一下",
                        "anonymous": True}, type="ack")
    conversation_id = ack["conversationId"]
    assigned = agent.expect(type="assigned", conversationId=conversation_id)
    assert assigned["customer"] == {"id": fresh["customerId"], "name": "", "tags": []}
    assert [m["sender"]["name"] for m in assigned["history"] if m["sender"]["role"] == "customer"] == [""]
    second = chat.request({"action": "message", "conversationId": conversation_id, "clientMessageId": "a2",
                           "text": "还有一个问题"}, type="ack")
    live = agent.expect(type="message", conversationId=conversation_id, seq=second["seq"])
    assert live["sender"] == {"role": "customer", "id": fresh["customerId"], "name": ""}
    named = chat.request({"action": "message", "conversationId": conversation_id, "clientMessageId": "a3",
                          "text": "x", "anonymous": True}, type="error")
    assert named["code"] == "invalid_frame"  # only a message that opens a conversation says it

    # what is stored: META anonymous, no name, no tags, the fresh id, nothing of the site's customer
    items = _conversation_items(stack, world.workspace, conversation_id)
    meta = next(i for i in items if i["sk"]["S"] == "META")
    assert meta["anonymous"] == {"BOOL": True}
    assert meta["customerId"]["S"] == fresh["customerId"]
    assert meta.get("customerName", {"S": ""})["S"] == "" and meta.get("customerTags", {"L": []})["L"] == []
    stored = json.dumps(items, ensure_ascii=False)
    assert "site-77" not in stored and "Secret Person" not in stored and "vip-secret" not in stored
    # the agent's views: the inbox and the workspace's list show no name
    inbox = agent.request({"action": "inbox"}, type="inbox")
    assert [c["customer"] for c in inbox["conversations"] if c["conversationId"] == conversation_id] == [
        {"id": fresh["customerId"], "name": "", "tags": []}]
    listed = requests.get(_api(world, "/conversations"), headers=_h(world.token("agent", "admin")), timeout=10)
    assert listed.status_code == 200 and "Secret Person" not in listed.text and "site-77" not in listed.text

    # the identified customer's own channels are unaffected: the app backend's REST message opens their own,
    # named conversation, apart from the anonymous one
    key = requests.post(_api(world, "/api-keys"), json={"name": "app"}, headers=_h(world.token("agent", "admin")),
                        timeout=10).json()["key"]
    rest = requests.post(f"{stack.api_url}/integrations/channels/rest/messages", headers={"x-api-key": key},
                         timeout=10, json={"customerId": "site-77", "customerName": "Secret Person",
                                           "text": "App 里问", "messageId": "app-1"})
    assert rest.status_code == 202, rest.text
    assert rest.json()["conversationId"] != conversation_id
    own = world.store.get_conversation(world.workspace, rest.json()["conversationId"])
    assert (own.customer_id, own.customer_name, own.anonymous, own.channel) == ("site-77", "Secret Person", False,
                                                                                 "rest")
    assert world.store.get_conversation(world.workspace, conversation_id).customer_id == fresh["customerId"]


def test_without_the_choice_nothing_changes(desk, stack):
    world = desk
    agent = world.agent_socket("agent-1")
    customer = world.connect(world.token("visitor", "site-78", name="Named Person", tags=["vip"]))
    ack = customer.request({"action": "message", "clientMessageId": "m1", "text": "你好"}, type="ack")
    assigned = agent.expect(type="assigned", conversationId=ack["conversationId"])
    assert assigned["customer"] == {"id": "site-78", "name": "Named Person", "tags": ["vip"]}
    meta = next(i for i in _conversation_items(stack, world.workspace, ack["conversationId"]) if i["sk"]["S"] == "META")
    assert "anonymous" not in meta or meta["anonymous"].get("NULL")


# ---------------------------------------------------------------- erasure revokes tokens


def _erase(world, customer_id: str) -> int:
    """Erase the customer; the recorded erasure time (epoch seconds)."""
    deleted = requests.delete(_api(world, f"/customers/{customer_id}"), headers=_admin(world), timeout=30)
    assert deleted.status_code == 200, deleted.text
    record = world.stack.client("dynamodb").get_item(
        TableName=schema.DIRECTORY.local_name, ConsistentRead=True,
        Key={"pk": {"S": world.workspace}, "sk": {"S": f"ERASED#{customer_digest(world.workspace, customer_id)}"}})
    return int(record["Item"]["erasedAt"]["N"])


def test_an_erased_customers_tokens_are_refused_and_a_later_token_works(desk, world_factory, stack):
    world = desk
    agent = world.agent_socket("agent-1")
    old = world.token("visitor", "gone-1", name="Gone Person")
    customer = world.connect(old)
    ack = customer.request({"action": "message", "clientMessageId": "m1", "text": "删除我"}, type="ack")
    agent.expect(type="assigned", conversationId=ack["conversationId"])
    keeper = world.token("visitor", "keep-1", name="Keeper")
    twin_world = world_factory()
    twin = twin_world.token("visitor", "gone-1", name="Gone Person")  # the same id in another workspace

    erased_at = _erase(world, "gone-1")
    assert erased_at <= time.time()
    # the old token: refused at $connect, as an expired one (401), and by the REST routes that take a visitor token
    assert _refusal(world, old) == 401
    for method, url in (("GET", f"{stack.api_url}/conversations/{ack['conversationId']}/messages"),
                        ("GET", _api(world, "/experiments/assignments")),
                        ("POST", f"{stack.api_url}/conversations/{ack['conversationId']}/attachments")):
        answer = requests.request(method, url, headers=_h(old), timeout=10,
                                  json={"name": "a.txt", "contentType": "text/plain", "size": 1})
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized", (url, answer.text)
    # a token minted in the erasure's second is refused too (iat is whole seconds); the next second's is not
    same_second = world.token("visitor", "gone-1", now=erased_at + 0.9)
    assert _refusal(world, same_second) == 401
    wait_for(lambda: time.time(), until=lambda now: int(now) > erased_at, timeout=3, every=0.05)
    later = world.token("visitor", "gone-1", name="Gone Person")  # a new visit: the site signs the id again
    back = world.connect(later)
    fresh = back.request({"action": "message", "clientMessageId": "m1", "text": "又来了"}, type="ack")
    assert fresh["conversationId"] != ack["conversationId"]
    agent.expect(type="assigned", conversationId=fresh["conversationId"])
    got = requests.get(f"{stack.api_url}/conversations/{fresh['conversationId']}/messages", headers=_h(later),
                       timeout=10)
    assert got.status_code == 200 and [m["text"] for m in got.json()["items"]][0] == "又来了"
    # another customer, and the same customer id in another workspace, were never affected
    world.connect(keeper).request({"action": "inbox"}, type="inbox")
    twin_world.connect(twin).request({"action": "inbox"}, type="inbox")

    # the record: the time and a digest, never the id; it expires (DynamoDB TTL) after every token it could refuse
    record = stack.client("dynamodb").get_item(
        TableName=schema.DIRECTORY.local_name, ConsistentRead=True,
        Key={"pk": {"S": world.workspace}, "sk": {"S": f"ERASED#{customer_digest(world.workspace, 'gone-1')}"}})["Item"]
    assert "gone-1" not in json.dumps(record)
    assert int(record["expiresAt"]["N"]) == int(record["erasedAt"]["N"]) + ERASURE_KEEP_S
    assert ERASURE_KEEP_S > tokens.MAX_TTL_S
    ttl = stack.client("dynamodb").describe_time_to_live(TableName=schema.DIRECTORY.local_name)
    assert ttl["TimeToLiveDescription"] == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}


def test_an_erased_anonymous_visitors_token_is_not_renewed(desk, stack):
    world = desk
    agent = world.agent_socket("agent-1")
    visitor = _anonymous_token(world)
    renewed = requests.post(_api(world, "/visitor-tokens"), json={}, headers=_h(visitor["token"]), timeout=10)
    assert renewed.status_code == 200 and renewed.json()["customerId"] == visitor["customerId"]  # renewal: same id
    chat = world.connect(visitor["token"])
    ack = chat.request({"action": "message", "clientMessageId": "m1", "text": "你好"}, type="ack")
    agent.expect(type="assigned", conversationId=ack["conversationId"])

    _erase(world, visitor["customerId"])
    for held in (visitor["token"], renewed.json()["token"]):
        answer = requests.post(_api(world, "/visitor-tokens"), json={}, headers=_h(held), timeout=10)
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "unauthorized", answer.text
        assert _refusal(world, held) == 401
    # a new visitor is a new customer
    again = requests.post(_api(world, "/visitor-tokens"), json={}, timeout=10)
    assert again.status_code == 200 and again.json()["customerId"] != visitor["customerId"]


def test_a_connection_authorized_before_an_erasure_and_registered_after_it_is_refused(world, stack):
    """The race the erasure's socket drop cannot see: the authorizer let the token in, then the erasure was
    recorded (and dropped the sockets it found), then $connect registers the connection. $connect reads the
    erasure after registering, so it refuses (401) and leaves nothing registered."""
    from kefu.identity import authorizer_context
    from kefu_local import events

    customer_id = "late-" + secrets.token_hex(3)
    who = tokens.verify(world.key, world.token("visitor", customer_id))  # what the authorizer accepted
    conn = {"connectionId": events.new_connection_id(), "connectedAt": int(time.time() * 1000),
            "sourceIp": "127.0.0.1", "authorizer": authorizer_context(who)}
    assert conn["authorizer"]["issuedAt"] == str(who.issued_at)
    world.store.record_erasure(world.workspace, customer_id, int(time.time()))
    result = stack.gateway.runtime.invoke("ws_connect", events.ws_connect(conn, {}, {}, "localhost", schema.WS_STAGE))
    assert result["statusCode"] == 401 and json.loads(result["body"])["message"] == "token revoked"
    assert world.store.connections_of(world.workspace, "customer", customer_id) == []
    # a customer with no erasure on record connects as usual
    other = tokens.verify(world.key, world.token("visitor", customer_id + "-x"))
    fine = {**conn, "connectionId": events.new_connection_id(), "authorizer": authorizer_context(other)}
    assert stack.gateway.runtime.invoke("ws_connect", events.ws_connect(fine, {}, {}, "localhost",
                                                                        schema.WS_STAGE))["statusCode"] == 200
    assert [c.connection_id for c in world.store.connections_of(world.workspace, "customer", customer_id + "-x")] \
        == [fine["connectionId"]]
