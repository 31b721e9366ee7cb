"""Personal data masked in stored text (issue 8) on the local stack: a workspace with maskPii stores its customers'
messages masked (WebSocket and the REST channel), seals the originals with the PII key (KMS in moto, an encryption
context per conversation), shows them only to the right role (each reveal and each refusal audited), gives them
back whole in the customer's export, and refuses to store a message it cannot seal (nothing lost: the resend)."""

from __future__ import annotations

import json

import pytest
import requests
from kefu import pii
from kefu_local.faults import Faults

from .test_privacy import _adm, _api, _h, _scan_all

ID_NUMBER = "11010519491231002" + pii.id_check_char("11010519491231002")
CARD = "4111 1111 1111 1111"
MOBILE = "13812345678"
EMAIL = "zhang.san@example.com"
TEXT = f"手机 {MOBILE}，身份证 {ID_NUMBER}，卡号 {CARD}，邮箱 {EMAIL}"
MASKED = f"手机 138****5678，身份证 110***********{ID_NUMBER[-4:]}，卡号 **** **** **** 1111，邮箱 z***@example.com"
SECRETS = (MOBILE, ID_NUMBER, CARD, CARD.replace(" ", ""), EMAIL)


@pytest.fixture
def masked_shop(world):
    world.agent("agent-1")
    world.agent("agent-2", "Agent Two")
    world.agent("sup", "Supervisor", role="supervisor")
    world.agent("admin", "Admin", role="admin")
    requests.put(_api(world, "/bot"), headers=_adm(world), json={"enabled": False}, timeout=10)
    put = requests.put(_api(world, "/privacy"), headers=_adm(world), json={"maskPii": True}, timeout=10)
    assert put.status_code == 200 and put.json() == {"retentionDays": 365, "anonymous": False, "maskPii": True,
                                                     "piiRevealRole": "supervisor"}, put.text
    return world


def _original(world, agent_id: str, conversation_id: str, seq: int, workspace: str | None = None):
    return requests.get(f"{world.stack.api_url}/conversations/{conversation_id}/messages/{seq}/original",
                        headers=_h(world.token("agent", agent_id, workspace=workspace or world.workspace)), timeout=10)


def test_masked_in_storage_and_frames_revealed_only_to_the_right_role(masked_shop, world_factory, stack):
    world = masked_shop
    agent = world.agent_socket("agent-1")
    customer = world.customer("pii-1", name="Li Si")
    opened = customer.request({"action": "message", "clientMessageId": "m0", "text": f"我是 {EMAIL}"}, type="ack")
    conversation = opened["conversationId"]
    agent.expect(type="assigned", conversationId=conversation)
    ack = customer.request({"action": "message", "conversationId": conversation, "clientMessageId": "m1",
                            "text": TEXT}, type="ack")
    pushed = agent.expect(type="message", conversationId=conversation, seq=ack["seq"])
    assert pushed["text"] == MASKED and pushed["masked"] is True
    plain = customer.request({"action": "message", "conversationId": conversation, "clientMessageId": "m2",
                              "text": "没有个人信息"}, type="ack")
    reply = agent.request({"action": "message", "conversationId": conversation, "clientMessageId": "a1",
                           "text": "请发邮件到 help@shop.example"}, type="ack")  # staff write what customers should read
    synced = customer.request({"action": "sync", "conversationId": conversation, "afterSeq": 0}, type="sync")
    by_seq = {m["seq"]: m for m in synced["messages"]}
    assert by_seq[opened["seq"]]["text"] == "我是 z***@example.com"
    assert by_seq[ack["seq"]]["text"] == MASKED and by_seq[ack["seq"]]["masked"] is True
    assert by_seq[plain["seq"]]["text"] == "没有个人信息" and "masked" not in by_seq[plain["seq"]]
    assert by_seq[reply["seq"]]["text"] == "请发邮件到 help@shop.example"
    listed = requests.get(f"{stack.api_url}/conversations/{conversation}/messages",
                          headers=_h(world.token("agent", "agent-1")), timeout=10).json()["items"]
    assert [m["text"] for m in listed if m["sender"]["role"] == "customer"] == [
        "我是 z***@example.com", MASKED, "没有个人信息"]

    # nothing stored holds a value, the customer's or a resend's: only the sealed record (KMS ciphertext)
    stored = [line for line in _scan_all(stack) if world.workspace in line]
    assert stored and not [s for s in SECRETS if any(s in line for line in stored)]
    record = next(json.loads(line) for line in stored if MASKED in line and '"pii"' in line)
    sealed = json.loads(record["pii"]["S"])
    assert len(sealed["spans"]) == 4 and sealed["sealed"] and all(s not in sealed["sealed"] for s in SECRETS)

    # the conversation's agent (role agent) may not see originals by default; supervisors and admins may
    refused = _original(world, "agent-1", conversation, ack["seq"])
    assert refused.status_code == 403 and "supervisor" in refused.json()["error"]["message"]
    for staff in ("sup", "admin"):
        shown = _original(world, staff, conversation, ack["seq"])
        assert shown.status_code == 200, shown.text
        assert shown.json() == {"conversationId": conversation, "seq": ack["seq"], "text": TEXT, "masked": True}
    unmasked = _original(world, "sup", conversation, plain["seq"]).json()
    assert unmasked["text"] == "没有个人信息" and unmasked["masked"] is False
    assert _original(world, "sup", conversation, 999).status_code == 404
    assert _original(world, "agent-2", conversation, ack["seq"]).status_code == 404  # not their conversation
    as_customer = requests.get(f"{stack.api_url}/conversations/{conversation}/messages/{ack['seq']}/original",
                               headers=_h(world.token("visitor", "pii-1")), timeout=10)
    assert as_customer.status_code == 403
    other = world_factory()
    other.agent("sup", "Other supervisor", role="supervisor")
    assert _original(other, "sup", conversation, ack["seq"]).status_code == 404  # another workspace: unknown

    # with piiRevealRole "agent", the conversation's own agent sees them too (still not another agent)
    assert requests.put(_api(world, "/privacy"), headers=_adm(world), timeout=10,
                        json={"maskPii": True, "piiRevealRole": "agent"}).ok
    assert _original(world, "agent-1", conversation, ack["seq"]).json()["text"] == TEXT
    assert _original(world, "agent-2", conversation, ack["seq"]).status_code == 404
    assert requests.put(_api(world, "/privacy"), headers=_adm(world), timeout=10,
                        json={"maskPii": True, "piiRevealRole": "admin"}).ok
    assert _original(world, "sup", conversation, ack["seq"]).status_code == 403

    # every reveal and every refusal is in the audit log, without the text
    audit = requests.get(_api(world, "/audit"), params={"action": "pii.reveal"}, headers=_adm(world),
                         timeout=10).json()["items"]
    outcomes = sorted((e["actor"]["id"], e["outcome"]) for e in audit)
    assert outcomes == sorted([("agent-1", "refused"), ("sup", "ok"), ("admin", "ok"), ("agent-1", "ok"),
                               ("sup", "refused")]), outcomes
    assert not [s for s in SECRETS if s in json.dumps(audit, ensure_ascii=False)]

    # the customer's export gives them their own words whole
    exported = requests.get(_api(world, "/customers/pii-1/export"), headers=_adm(world), timeout=30)
    assert exported.status_code == 200, exported.text
    texts = [m["text"] for c in exported.json()["conversations"] for m in c["messages"]]
    assert TEXT in texts and f"我是 {EMAIL}" in texts and MASKED not in texts


def test_rest_channel_messages_are_masked_too(masked_shop, stack):
    world = masked_shop
    key = requests.post(_api(world, "/api-keys"), json={"name": "app"}, headers=_adm(world), timeout=10).json()["key"]
    agent = world.agent_socket("agent-1")
    posted = requests.post(f"{stack.api_url}/integrations/channels/rest/messages", headers={"x-api-key": key},
                           json={"customerId": "app-pii", "text": TEXT, "messageId": "app-1"}, timeout=10)
    assert posted.status_code == 202, posted.text
    conversation = posted.json()["conversationId"]
    agent.expect(type="assigned", conversationId=conversation)
    synced = agent.request({"action": "sync", "conversationId": conversation, "afterSeq": 0}, type="sync")
    pushed = next(m for m in synced["messages"] if m["seq"] == posted.json()["seq"])
    assert pushed["text"] == MASKED and pushed["channel"] == "rest" and pushed["masked"] is True
    shown = _original(world, "sup", conversation, posted.json()["seq"])
    assert shown.json()["text"] == TEXT


def test_a_message_that_cannot_be_sealed_is_refused_and_the_resend_stores_it_once(masked_shop, stack):
    world = masked_shop
    agent = world.agent_socket("agent-1")
    customer = world.customer("pii-2")
    first = customer.request({"action": "message", "clientMessageId": "m1", "text": "你好"}, type="ack")
    conversation = first["conversationId"]
    agent.expect(type="assigned", conversationId=conversation)
    frame = {"action": "message", "conversationId": conversation, "clientMessageId": "m2", "text": TEXT}
    with Faults() as faults:  # KMS failing every attempt (botocore's retries included): nothing may be stored
        faults.add("error500", service="kms", operation="Encrypt", match=world.workspace)
        error = customer.request(frame, type="error")
        assert faults.hits("error500") >= 1
    assert error["code"] == "busy" and error["clientMessageId"] == "m2"
    stored = [line for line in _scan_all(stack) if world.workspace in line]
    assert not [s for s in SECRETS if any(s in line for line in stored)]
    assert not [line for line in stored if "138****5678" in line]  # not stored masked without its original either
    ack = customer.request(frame, type="ack")
    again = customer.request(frame, type="ack")  # a second resend: the same message
    assert ack["seq"] == again["seq"]
    history = agent.request({"action": "sync", "conversationId": conversation, "afterSeq": 0}, type="sync")["messages"]
    assert [m["text"] for m in history if m["sender"]["role"] == "customer"] == ["你好", MASKED]


def test_workspaces_that_do_not_mask_store_text_as_written(world, stack):
    world.agent("agent-1")
    world.agent("admin", "Admin", role="admin")
    requests.put(_api(world, "/bot"), headers=_adm(world), json={"enabled": False}, timeout=10)
    settings = requests.get(_api(world, "/privacy"), headers=_adm(world), timeout=10).json()
    assert settings["maskPii"] is False and settings["piiRevealRole"] == "supervisor"
    assert requests.put(_api(world, "/privacy"), headers=_adm(world), json={"piiRevealRole": "owner"},
                        timeout=10).status_code == 422
    agent = world.agent_socket("agent-1")
    customer = world.customer("plain-1")
    ack = customer.request({"action": "message", "clientMessageId": "m1", "text": TEXT}, type="ack")
    agent.expect(type="assigned", conversationId=ack["conversationId"])
    synced = agent.request({"action": "sync", "conversationId": ack["conversationId"], "afterSeq": 0}, type="sync")
    pushed = next(m for m in synced["messages"] if m["seq"] == ack["seq"])
    assert pushed["text"] == TEXT and "masked" not in pushed
