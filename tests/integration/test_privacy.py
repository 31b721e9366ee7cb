"""Data protection on the local stack (issue 8): a customer's export and erasure end to end, retention TTLs and
anonymous consultation.

A customer chats over WebSocket (messages, an attached file, the CSAT rating after a close, a second conversation
still open with their socket connected), has a ticket with a comment, a business event, an experiment exposure and
conversion. The export holds all of it; the deletion removes all of it: afterwards no REST route or WebSocket sync
shows it, a scan of every DynamoDB table finds no item with their id or their words, S3 has nothing under their
conversations' prefixes and the search index no document with their words. Another customer of the workspace
and the same customer id in another workspace keep everything."""

from __future__ import annotations

import json
import secrets
import time

import pytest
import requests
from kefu import schema
from kefu.adapters.search_index import client as search_client
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .conftest import wait_for
from .test_attachments import attach, send


def _api(world, path: str) -> str:
    return f"{world.stack.api_url}/workspaces/{world.workspace}{path}"


def _h(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _adm(world) -> dict:
    """The admin's headers, with a fresh step-up (export and erasure need one, kefu.step_up)."""
    from kefu import step_up

    return {**_h(world.token("agent", "admin")),
            step_up.HEADER: step_up.issue(world.key, workspace=world.workspace, agent_id="admin", method="totp")}


def _scan_all(stack) -> list[str]:
    """Every item of every table, as JSON text."""
    dynamodb = stack.client("dynamodb")
    out = []
    for table in schema.TABLES.values():
        name = table.local_name
        start = None
        while True:
            page = dynamodb.scan(TableName=name, **({"ExclusiveStartKey": start} if start else {}))
            out += [json.dumps(item, ensure_ascii=False) for item in page.get("Items", [])]
            start = page.get("LastEvaluatedKey")
            if not start:
                break
    return out


def _customer_with_everything(world, customer_id: str, marker: str):
    """The customer's data in world's workspace; returns what the test checks against."""
    agent = world.agent_socket("agent-1")
    customer_token = world.token("visitor", customer_id, name="Privacy Person")
    customer = world.connect(customer_token)
    # an experiment the customer is exposed to, then converts in
    created = requests.post(_api(world, "/experiments"), headers=_adm(world), timeout=10, json={
        "name": "greeting", "kind": "greeting", "variants": [{"id": "a", "weight": 1, "value": "hi"},
                                                              {"id": "b", "weight": 1, "value": "hello"}]})
    assert created.status_code == 201, created.text
    experiment = created.json()["experimentId"]
    assert requests.post(_api(world, f"/experiments/{experiment}/start"), headers=_adm(world), timeout=10).ok
    seen = requests.get(_api(world, "/experiments/assignments"), headers=_h(customer_token), timeout=10)
    assert seen.status_code == 200, seen.text
    exposed = requests.get(_api(world, "/experiments/assignments"), params={"expose": experiment},
                           headers=_h(customer_token), timeout=10)
    assert exposed.status_code == 200, exposed.text

    first_text = f"我的订单 {marker} 还没到"
    ack = customer.request({"action": "message", "clientMessageId": "m1", "text": first_text}, type="ack")
    c1 = ack["conversationId"]
    agent.expect(type="assigned", conversationId=c1)
    agent.request({"action": "message", "conversationId": c1, "clientMessageId": "a1",
                   "text": f"请稍等 {marker}-reply"}, type="ack")
    ref = attach(world, customer_token, c1)
    assert send(customer, c1, "m2", [ref], text=f"照片 {marker}-photo")["type"] == "ack"
    agent.request({"action": "close", "conversationId": c1, "resolved": True}, type="closed")
    customer.expect(type="closed", conversationId=c1)
    customer.request({"action": "csat", "conversationId": c1, "score": 4, "comment": f"ok {marker}-csat"}, type="csat")
    # a ticket with a comment, a business event
    ticket = requests.post(_api(world, "/tickets"), headers=_adm(world), timeout=10, json={
        "subject": f"退货 {marker}-ticket", "customerId": customer_id, "conversationId": c1})
    assert ticket.status_code == 201, ticket.text
    ticket_id = ticket.json()["ticketId"]
    comment = requests.post(_api(world, f"/tickets/{ticket_id}/comments"), headers=_adm(world), timeout=10,
                            json={"text": f"已联系 {marker}-comment"})
    assert comment.status_code == 201, comment.text
    event = requests.post(_api(world, "/events"), headers=_h(customer_token), timeout=10,
                          json={"eventId": "order-1", "type": "order_placed", "value": 99})
    assert event.status_code == 200, event.text
    # a second conversation, still open, with the customer's socket connected
    ack2 = customer.request({"action": "message", "clientMessageId": "m3", "text": f"还有 {marker}-second"},
                            type="ack")
    c2 = ack2["conversationId"]
    agent.expect(type="assigned", conversationId=c2)
    return {"token": customer_token, "socket": customer, "agent": agent, "c1": c1, "c2": c2, "key": ref["key"],
            "ticket": ticket_id, "experiment": experiment}


@pytest.fixture
def shop(world):
    world.agent("agent-1")
    world.agent("admin", "Admin", role="admin")
    requests.put(_api(world, "/bot"), headers=_adm(world), json={"enabled": False}, timeout=10)
    return world


def test_export_then_delete_a_customer_end_to_end(shop, world_factory, stack):
    world = shop
    tag = secrets.token_hex(4)
    customer_id, marker = f"del-{tag}", f"PX{tag}"
    data = _customer_with_everything(world, customer_id, marker)

    # another customer of the same workspace, and the same customer id in another workspace
    keep = world.connect(world.token("visitor", f"keep-{tag}", name="Keeper"))
    kept_ack = keep.request({"action": "message", "clientMessageId": "k1", "text": f"留着 KEEP{tag}"}, type="ack")
    data["agent"].expect(type="assigned", conversationId=kept_ack["conversationId"])
    other = world_factory()
    other.agent("agent-1")
    other.agent("admin", "Admin", role="admin")
    other_agent = other.agent_socket("agent-1")
    twin = other.connect(other.token("visitor", customer_id, name="Privacy Person"))
    twin_ack = twin.request({"action": "message", "clientMessageId": "t1", "text": f"别处 TWIN{tag}"}, type="ack")
    other_agent.expect(type="assigned", conversationId=twin_ack["conversationId"])

    # ---- export
    exported = requests.get(_api(world, f"/customers/{customer_id}/export"), headers=_adm(world), timeout=10)
    assert exported.status_code == 200, exported.text
    dump = exported.json()
    text = json.dumps(dump, ensure_ascii=False)
    assert dump["customerId"] == customer_id and "Privacy Person" in dump["profile"]["names"]
    assert [c["conversationId"] for c in dump["conversations"]] == [data["c1"], data["c2"]]
    first = dump["conversations"][0]
    said = [m["text"] for m in first["messages"]]
    assert said[0] == f"我的订单 {marker} 还没到" and f"请稍等 {marker}-reply" in said and f"照片 {marker}-photo" in said
    assert first["csat"]["score"] == 4 and f"{marker}-csat" in first["csat"]["comment"]
    assert [a["key"] for a in first["attachments"]] == [data["key"]] and first["attachments"][0]["url"]
    assert requests.get(first["attachments"][0]["url"], timeout=10).status_code == 200
    assert [t["ticketId"] for t in dump["tickets"]] == [data["ticket"]]
    assert f"{marker}-comment" in dump["tickets"][0]["comments"][0]["text"]
    assert [e["eventId"] for e in dump["businessEvents"]] == ["order-1"]
    assert {m["type"] for m in dump["experiments"]} >= {"seen", "exposure", "conversion", "converted"}
    assert f"{marker}-second" in text and f"KEEP{tag}" not in text

    # ---- delete
    deleted = requests.delete(_api(world, f"/customers/{customer_id}"), headers=_adm(world), timeout=30)
    assert deleted.status_code == 200, deleted.text
    report = deleted.json()
    assert report["complete"] is True and report["remaining"] == []
    counts = report["deleted"]
    assert (counts["conversations"], counts["attachments"], counts["tickets"], counts["businessEvents"]) == (2, 1, 1, 1)
    assert counts["messages"] >= 5 and counts["ticketComments"] == 1 and counts["experimentRecords"] >= 3
    # the open conversation was closed for the agent, the customer's socket dropped
    data["agent"].expect(type="closed", conversationId=data["c2"])
    with pytest.raises((ConnectionClosed, AssertionError)):
        data["socket"].expect(type="never", timeout=5)

    # ---- nothing readable through REST or WebSocket
    # the customer's token is revoked (tests/integration/test_visitor_privacy.py): refused at $connect and by REST;
    # a token issued after the erasure is a new start, and finds nothing of the old conversations
    old_token = data["token"]
    with pytest.raises(InvalidStatus) as refused:
        world.connect(old_token)
    assert refused.value.response.status_code == 401
    assert requests.get(f"{stack.api_url}/conversations/{data['c1']}/messages", headers=_h(old_token),
                        timeout=10).status_code == 401
    time.sleep(1.05)  # tokens carry whole seconds: one of the erasure's second is refused too
    token = world.token("visitor", customer_id, name="Privacy Person")
    # (the profile, GET /customers/{id}, needs a step-up: it reads the same conversations and tickets as the export)
    for path in (f"/customers/{customer_id}/export", f"/tickets/{data['ticket']}"):
        assert requests.get(_api(world, path), headers=_adm(world), timeout=10).status_code == 404, path
    for c in (data["c1"], data["c2"]):
        got = requests.get(f"{stack.api_url}/conversations/{c}/messages", headers=_h(token), timeout=10)
        assert got.status_code == 404
    listed = requests.get(_api(world, "/conversations"), headers=_adm(world), timeout=10)
    assert listed.status_code == 200 and listed.json()["items"], listed.text
    assert customer_id not in listed.text and marker not in listed.text
    back = world.connect(token)
    for c in (data["c1"], data["c2"]):
        reply = back.request({"action": "sync", "conversationId": c, "afterSeq": 0}, type="error")
        assert reply["code"] == "not_found"
    assert back.request({"action": "inbox"}, type="inbox")["conversations"] == []
    back.close()
    time.sleep(0.5)  # its $disconnect

    # idempotent: nothing of the deleted data left to delete (the reconnect above made a socket and a rate counter,
    # which go now too)
    again = requests.delete(_api(world, f"/customers/{customer_id}"), headers=_adm(world), timeout=30)
    assert again.status_code == 200, again.text
    left = {k: v for k, v in again.json()["deleted"].items() if v and k not in ("connections", "rateCounters")}
    assert left == {}

    # ---- no item anywhere with their id (but the twin's, in the other workspace) or their words
    items = wait_for(lambda: [i for i in _scan_all(stack) if (customer_id in i and other.workspace not in i)
                              or marker in i], until=lambda found: not found, timeout=10)
    assert items == []
    s3 = stack.client("s3")
    for c in (data["c1"], data["c2"]):
        listed = s3.list_objects_v2(Bucket=schema.ATTACHMENTS.local_name, Prefix=f"{world.workspace}/{c}/")
        assert listed.get("KeyCount", 0) == 0
    hits = search_client().search(index=schema.KB_INDEX, body={"size": 10000, "query": {"match_all": {}}})
    assert marker not in json.dumps(hits, ensure_ascii=False)

    # ---- the others keep everything
    keep_export = requests.get(_api(world, f"/customers/keep-{tag}/export"), headers=_adm(world), timeout=10)
    assert keep_export.status_code == 200 and f"KEEP{tag}" in keep_export.text
    kept = keep.request({"action": "sync", "conversationId": kept_ack["conversationId"], "afterSeq": 0}, type="sync")
    assert [m["text"] for m in kept["messages"]][0] == f"留着 KEEP{tag}"
    twin_export = requests.get(f"{stack.api_url}/workspaces/{other.workspace}/customers/{customer_id}/export",
                               headers=_adm(other), timeout=10)
    assert twin_export.status_code == 200 and f"TWIN{tag}" in twin_export.text
    # the experiment stays (its per-variant counts carry no identity)
    assert requests.get(_api(world, f"/experiments/{data['experiment']}"), headers=_adm(world), timeout=10).ok


def test_only_admins_export_or_delete(shop):
    world = shop
    world.agent("sup", "Sup", role="supervisor")
    for who in ("agent-1", "sup"):
        token = world.token("agent", who)
        assert requests.get(_api(world, "/customers/x-1/export"), headers=_h(token), timeout=10).status_code == 403
        assert requests.delete(_api(world, "/customers/x-1"), headers=_h(token), timeout=10).status_code == 403
    visitor = world.token("visitor", "x-1")
    assert requests.delete(_api(world, "/customers/x-1"), headers=_h(visitor), timeout=10).status_code == 403
    assert requests.get(_api(world, "/customers/x-1/export"), headers=_adm(world),
                        timeout=10).status_code == 404  # nothing held


def _items_of(stack, workspace: str, conversation_id: str) -> list[dict]:
    page = stack.client("dynamodb").query(TableName=schema.CONVERSATIONS.local_name,
                                          KeyConditionExpression="pk = :pk",
                                          ExpressionAttributeValues={":pk": {"S": f"{workspace}#C#{conversation_id}"}})
    return page["Items"]


def test_retention_sets_the_ttl_of_new_conversation_items(shop, stack):
    world = shop
    admin = _adm(world)
    assert requests.get(_api(world, "/privacy"), headers=admin, timeout=10).json() == {
        "retentionDays": 365, "anonymous": False, "maskPii": False, "piiRevealRole": "supervisor"}
    assert requests.put(_api(world, "/privacy"), headers=admin, json={"retentionDays": 0}, timeout=10).status_code == 422
    put = requests.put(_api(world, "/privacy"), headers=admin, json={"retentionDays": 30}, timeout=10)
    assert put.status_code == 200 and put.json()["retentionDays"] == 30
    agent = world.agent_socket("agent-1")
    customer = world.customer("ttl-1")
    ack = customer.request({"action": "message", "clientMessageId": "m1", "text": "hello"}, type="ack")
    agent.expect(type="assigned", conversationId=ack["conversationId"])
    items = _items_of(stack, world.workspace, ack["conversationId"])
    expected = time.time() + 30 * 86400
    kinds = {i["sk"]["S"].split("#")[0]: i for i in items}
    for kind in ("META", "MSG", "USED"):
        assert abs(int(kinds[kind]["expiresAt"]["N"]) - expected) < 120, kind
    pointer = stack.client("dynamodb").get_item(TableName=schema.CONVERSATIONS.local_name, Key={
        "pk": {"S": f"{world.workspace}#U#ttl-1"}, "sk": {"S": "OPEN"}})["Item"]
    assert abs(int(pointer["expiresAt"]["N"]) - expected) < 120


def test_anonymous_consultation_stores_no_identity(shop, stack):
    world = shop
    admin = _adm(world)
    assert requests.put(_api(world, "/privacy"), headers=admin, json={"anonymous": True}, timeout=10).ok
    agent = world.agent_socket("agent-1")
    customer = world.connect(world.token("visitor", "anon-1", name="Secret Name", tags=["vip-secret"]))
    ack = customer.request({"action": "message", "clientMessageId": "m1", "text": "hello"}, type="ack")
    agent.expect(type="assigned", conversationId=ack["conversationId"])
    stored = json.dumps(_items_of(stack, world.workspace, ack["conversationId"]), ensure_ascii=False)
    assert "Secret Name" not in stored and "vip-secret" not in stored and "anon-1" in stored
    everywhere = [i for i in _scan_all(stack) if "Secret Name" in i or "vip-secret" in i]
    assert everywhere == []
