"""Outgoing webhooks: subscription validation (SSRF), signatures, the events stream changes mean, and
delivery (Dispatcher + HttpSender) against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kefu import webhooks
from kefu.errors import InvalidRequest
from kefu.webhooks import (
    EVENT_TYPES,
    GAVE_UP,
    SKIPPED,
    Attempt,
    DeliveryResult,
    Dispatcher,
    Event,
    HttpSender,
    Subscription,
    UnresolvableHost,
    check_destination,
    envelope,
    events_from_conversation_change,
    events_from_stream_record,
    events_from_ticket_change,
    parse_subscription,
    sign,
    update_subscription,
    verify,
)

PUBLIC = "93.184.215.14"
NAMES = {
    "hooks.example.com": [PUBLIC],
    "dual.example.com": [PUBLIC, "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
    "internal.example.com": ["192.168.1.10"],
    "mixed.example.com": [PUBLIC, "10.0.0.1"],
    "imds.example.com": ["169.254.169.254"],
    "v6loop.example.com": ["::1"],
    "mapped.example.com": ["::ffff:10.0.0.1"],
}


@pytest.fixture(autouse=True)
def names(monkeypatch):
    """No DNS in unit tests: the names above resolve to what the test says (and tests may change)."""
    table = {name: list(addresses) for name, addresses in NAMES.items()}

    def fake_resolver(host: str, port: int) -> list[str]:
        if host in table:
            return list(table[host])
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(webhooks, "resolver", fake_resolver)
    return table


# ---------------------------------------------------------------- validation


def test_a_subscription_gets_an_id_and_a_secret_it_never_shows():
    sub = parse_subscription("demo", {"url": "https://hooks.example.com/kefu?x=1", "events": ["ticket.created",
                                      "message.created", "ticket.created"], "description": " CRM sync "},
                             allow_private=False)
    assert sub.id.startswith("wh_") and sub.workspace == "demo" and sub.active
    assert sub.secret.startswith("whsec_") and len(sub.secret) > 40
    assert sub.events == ("message.created", "ticket.created")  # canonical order, no duplicates
    assert sub.description == "CRM sync"
    public = sub.public()
    assert "secret" not in json.dumps(public) and sub.secret not in json.dumps(public)
    assert public["subscriptionId"] == sub.id and public["events"] == ["message.created", "ticket.created"]
    other = parse_subscription("demo", {"url": "https://hooks.example.com/", "events": ["*"]}, allow_private=False)
    assert other.id != sub.id and other.secret != sub.secret
    assert other.wants("csat.submitted") and not sub.wants("conversation.closed") and sub.wants("ticket.created")


@pytest.mark.parametrize("url, message", [
    ("http://hooks.example.com/x", "https"),
    ("ftp://hooks.example.com/x", "https"),
    ("hooks.example.com/x", "https"),
    ("https://user:pw@hooks.example.com/x", "password"),
    ("https://token@hooks.example.com/x", "password"),
    ("https:///x", "host"),
    ("https://hooks.example.com:99999/x", "valid URL"),
    ("https://hooks.example.com/x#frag", "fragment"),
    ("https://hooks.example.com/a b", "spaces"),
    ("https://127.0.0.1/x", "not a public address"),
    ("https://10.1.2.3/x", "not a public address"),
    ("https://172.16.0.1/x", "not a public address"),
    ("https://192.168.0.1/x", "not a public address"),
    ("https://169.254.169.254/latest/meta-data/", "not a public address"),
    ("https://100.64.0.1/x", "not a public address"),  # shared (carrier-grade NAT)
    ("https://0.0.0.0/x", "not a public address"),
    ("https://224.0.0.1/x", "not a public address"),
    ("https://[::1]/x", "not a public address"),
    ("https://[fd00:ec2::254]/x", "not a public address"),  # the IPv6 metadata service
    ("https://[fe80::1]/x", "not a public address"),
    ("https://[::ffff:127.0.0.1]/x", "not a public address"),
    ("https://[64:ff9b::a00:1]/x", "not a public address"),  # NAT64 of 10.0.0.1
    ("https://localhost/x", "not a public host"),
    ("https://metadata.google.internal/x", "not a public host"),
    ("https://internal.example.com/x", "non-public address"),
    ("https://mixed.example.com/x", "non-public address"),  # every address is checked
    ("https://imds.example.com/x", "non-public address"),
    ("https://v6loop.example.com/x", "non-public address"),
    ("https://mapped.example.com/x", "non-public address"),
    ("https://nowhere.example.com/x", "does not resolve"),
])
def test_urls_that_must_not_be_called_are_refused(url, message):
    with pytest.raises(InvalidRequest) as error:
        parse_subscription("demo", {"url": url, "events": ["*"]}, allow_private=False)
    assert message in error.value.message


def test_numeric_host_forms_are_resolved_before_they_are_judged(monkeypatch):
    monkeypatch.setattr(webhooks, "resolver", webhooks._resolve)  # the real getaddrinfo: no DNS for these
    for url in ("https://2130706433/x", "https://0x7f.1/x", "https://127.1/x"):
        with pytest.raises(InvalidRequest, match="non-public"):
            check_destination(url, allow_private=False)


def test_private_destinations_are_allowed_only_when_asked():
    assert check_destination("http://127.0.0.1:8080/hook", allow_private=True) == ["127.0.0.1"]
    assert check_destination("https://internal.example.com/x", allow_private=True) == ["192.168.1.10"]
    assert check_destination("https://dual.example.com/x", allow_private=False)[0] == PUBLIC
    with pytest.raises(InvalidRequest, match="password"):
        check_destination("http://u:p@127.0.0.1/", allow_private=True)
    with pytest.raises(UnresolvableHost):
        check_destination("https://nowhere.example.com/", allow_private=True)


@pytest.mark.parametrize("body, message", [
    ({"url": "https://hooks.example.com/", "events": []}, "non-empty list"),
    ({"url": "https://hooks.example.com/", "events": "ticket.created"}, "non-empty list"),
    ({"url": "https://hooks.example.com/", "events": ["ticket.deleted"]}, "unknown event types 'ticket.deleted'"),
    ({"url": "https://hooks.example.com/", "events": ["*", "ticket.created"]}, "alone"),
    ({"url": "https://hooks.example.com/", "events": [1]}, "non-empty list"),
    ({"url": "https://hooks.example.com/", "events": ["*"], "description": "x" * 201}, "200"),
    ({"url": "https://hooks.example.com/", "events": ["*"], "secret": "mine"}, "unknown subscription fields: secret"),
    ({"url": "https://hooks.example.com/", "events": ["*"], "active": "yes"}, "active"),
    ({"events": ["*"]}, "needs url and events"),
    ({"url": 5, "events": ["*"]}, "url"),
    ({"url": "https://hooks.example.com/" + "a" * 2100, "events": ["*"]}, "at most 2048"),
])
def test_bad_subscription_bodies_say_what_is_wrong(body, message):
    with pytest.raises(InvalidRequest) as error:
        parse_subscription("demo", body, allow_private=False)
    assert message in error.value.message


def test_an_update_keeps_id_and_secret_and_validates_again():
    sub = parse_subscription("demo", {"url": "https://hooks.example.com/", "events": ["*"]}, allow_private=False)
    changed = update_subscription(sub, {"events": ["ticket.escalated"], "active": False}, allow_private=False)
    assert (changed.id, changed.secret, changed.url) == (sub.id, sub.secret, sub.url)
    assert changed.events == ("ticket.escalated",) and not changed.active and not changed.wants("ticket.escalated")
    with pytest.raises(InvalidRequest):
        update_subscription(sub, {"url": "https://10.0.0.1/"}, allow_private=False)
    assert set(EVENT_TYPES) >= {"message.created", "csat.submitted"} and len(EVENT_TYPES) == 10


# ---------------------------------------------------------------- signatures


def test_signatures_verify_and_reject_tampering_and_stale_timestamps():
    secret, body, now = "whsec_test", '{"a":"你好"}'.encode(), 1_780_000_000
    header = sign(secret, now, body)
    assert header.startswith(f"t={now},v1=") and len(header.split("v1=")[1]) == 64
    assert verify(secret, header, body, now + 10)
    assert verify(secret, header, body, now - 10)  # a little clock skew either way
    assert not verify(secret, header, body + b" ", now)  # tampered body
    assert not verify(secret, header, b'{"a":"\\u4f60\\u597d"}', now)  # same JSON, other bytes
    assert not verify("whsec_other", header, body, now)
    assert not verify(secret, header, body, now + 301)  # stale: a replay
    assert verify(secret, header, body, now + 600, tolerance_s=900)
    assert not verify(secret, header.replace(f"t={now}", f"t={now + 5}"), body, now)  # the timestamp is signed
    for bad in ("", "v1=abc", f"t={now}", "t=abc,v1=00", None):
        assert not verify(secret, bad, body, now)
    rotated = f"{header},v1={sign('whsec_old', now, body).split('v1=')[1]}"
    assert verify(secret, rotated, body, now) and verify("whsec_old", rotated, body, now)


# ---------------------------------------------------------------- events from stream images

CONV = "demo#C#c_18f2a"


def meta(**values) -> dict:
    """A META item as the Conversations stream shows it (PynamoDB's attributes, numbers as Decimal)."""
    image = {"pk": CONV, "sk": "META", "kind": "meta", "workspace": "demo", "conversationId": "c_18f2a",
             "customerId": "u_1", "customerName": "张三", "customerTags": ["vip"], "channel": "web",
             "status": "bot", "lastSeq": Decimal(0), "priority": Decimal(0), "openedAt": "2026-05-01T08:00:00.000Z",
             "customerKey": "demo#u_1", "updatedAt": "2026-05-01T08:00:00.000Z"}
    image.update(values)
    return {k: v for k, v in image.items() if v is not None}


def message(seq: int, **values) -> dict:
    image = {"pk": CONV, "sk": f"MSG#{seq:012d}", "kind": "msg", "seq": Decimal(seq), "clientMessageId": f"m{seq}",
             "senderRole": "customer", "senderId": "u_1", "senderName": "张三", "text": "我的订单还没到",
             "createdAt": f"2026-05-01T08:00:0{seq}.000Z"}
    image.update(values)
    return image


def test_a_new_message_is_message_created():
    [event] = events_from_conversation_change(None, message(3))
    assert event.type == "message.created" and event.workspace == "demo"
    assert event.occurred_at == "2026-05-01T08:00:03.000Z"
    assert event.data == {"conversationId": "c_18f2a", "seq": 3, "sender": {"role": "customer", "id": "u_1",
                          "name": "张三"}, "text": "我的订单还没到", "createdAt": "2026-05-01T08:00:03.000Z"}
    assert isinstance(event.data["seq"], int)
    bot = message(4, senderRole="bot", senderId="bot", senderName="小助手", channel="wechat",
                  meta='{"articleId": "a1", "confidence": 0.91, "decision": "answer"}')
    [event] = events_from_conversation_change(None, bot)
    assert event.data["channel"] == "wechat" and "meta" not in event.data  # the bot's internals stay inside
    json.dumps(envelope(event))  # plain JSON


def test_deterministic_event_ids():
    first = events_from_conversation_change(None, message(3))[0]
    again = events_from_conversation_change(None, message(3))[0]  # a redelivered stream record
    assert first.id == again.id and first.id.startswith("evt_")
    assert events_from_conversation_change(None, message(4))[0].id != first.id
    other_ws = message(3, pk="acme#C#c_18f2a")
    assert events_from_conversation_change(None, other_ws)[0].id != first.id
    closed = meta(status="closed", closedAt="2026-05-01T09:00:00.000Z", closeReason="resolved")
    a = events_from_conversation_change(meta(status="assigned", agentId="bob"), closed)
    b = events_from_conversation_change(meta(status="assigned", agentId="bob"), closed)
    assert [e.id for e in a] == [e.id for e in b]


def test_conversation_lifecycle_events():
    opened = meta()
    [event] = events_from_conversation_change(None, opened)
    assert event.type == "conversation.opened" and event.data["customerId"] == "u_1"
    assert event.data["channel"] == "web" and event.occurred_at == "2026-05-01T08:00:00.000Z"
    queued = meta(status="queued", queueKey="售后#999#1#c_18f2a", group="售后", lastSeq=Decimal(2))
    assert events_from_conversation_change(opened, queued) == []  # queued, a new lastSeq: nothing to tell
    assigned = meta(status="assigned", agentId="bob", agentName="Bob", agentKey="demo#bob", group="售后",
                    assignedAt="2026-05-01T08:01:00.000Z", updatedAt="2026-05-01T08:01:00.000Z")
    [event] = events_from_conversation_change(queued, assigned)
    assert event.type == "conversation.assigned" and event.data["agent"] == {"id": "bob", "name": "Bob"}
    assert event.data["previousAgentId"] is None and event.occurred_at == "2026-05-01T08:01:00.000Z"
    assert events_from_conversation_change(assigned, {**assigned, "lastSeq": Decimal(5)}) == []
    transferred = meta(status="assigned", agentId="amy", agentName="Amy", assignedAt="2026-05-01T08:05:00.000Z")
    [event] = events_from_conversation_change(assigned, transferred)
    assert event.type == "conversation.assigned" and event.data["previousAgentId"] == "bob"
    back_to_queue = meta(status="queued")  # agentId removed: not an assignment
    assert events_from_conversation_change(transferred, back_to_queue) == []
    closed = {**transferred, "status": "closed", "closedAt": "2026-05-01T09:00:00.000Z", "closeReason": "resolved"}
    [event] = events_from_conversation_change(transferred, closed)
    assert event.type == "conversation.closed" and event.data["reason"] == "resolved"
    assert event.data["agentId"] == "amy" and event.occurred_at == "2026-05-01T09:00:00.000Z"
    assert events_from_conversation_change(closed, {**closed, "updatedAt": "x"}) == []  # closed once


def test_other_conversation_items_are_no_events():
    assert events_from_conversation_change(message(3), message(3)) == []  # a rewrite, not a new message
    assert events_from_conversation_change(message(3), None) == []  # TTL deletion
    for image in ({"pk": CONV, "sk": "CONN#abc=", "kind": "fanout", "role": "customer"},
                  {"pk": CONV, "sk": "USED#customer#u_1#m1", "kind": "dedup", "seq": Decimal(1)},
                  {"pk": CONV, "sk": "RATE#000000000004", "kind": "rating", "helpful": True},
                  {"pk": "demo#U#u_1", "sk": "OPEN", "kind": "open", "conversationId": "c_18f2a"},
                  {"pk": "demo#Q", "sk": "售后#999#1#c_1", "kind": "queue"}):
        assert events_from_conversation_change(None, image) == []


def test_stream_records_pick_their_mapping_and_need_old_images():
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecordEventName

    assert [e.type for e in events_from_stream_record("INSERT", None, meta())] == ["conversation.opened"]
    assert [e.type for e in events_from_stream_record(DynamoDBRecordEventName.INSERT, None, ticket())] == \
        ["ticket.created"]
    assigned = meta(status="assigned", agentId="bob")
    assert events_from_stream_record("MODIFY", None, assigned) == []  # NEW_IMAGE only: cannot tell, so nothing
    assert [e.type for e in events_from_stream_record("MODIFY", meta(), assigned)] == ["conversation.assigned"]
    assert events_from_stream_record("REMOVE", message(1), None) == []
    assert events_from_stream_record("INSERT", None, {"pk": "demo", "sk": "TICKET_SETTINGS"}) == []


TPK = "demo#T#t_18f2b"


def ticket(**values) -> dict:
    """A TICKET item as the Tickets stream shows it (ticket_store's attributes, Decimal numbers, lists)."""
    created = {"type": "created", "at": "2026-05-01T08:00:00.000Z", "by": "bob", "byRole": "agent",
               "source": "rest", "priority": "normal", "deadline": "2026-05-04T08:00:00.000Z"}
    image = {"pk": TPK, "sk": "TICKET", "listKey": "demo", "customerKey": "demo#u_1", "subject": "发票没收到",
             "description": "内部：客户的身份证号 110101…", "priority": "normal", "status": "open",
             "groupId": "售后", "customerId": "u_1", "customerName": "张三", "deadline": "2026-05-04T08:00:00.000Z",
             "escalationLevel": Decimal(0), "conversations": ["c_18f2a"], "source": "rest",
             "createdAt": "2026-05-01T08:00:00.000Z", "updatedAt": "2026-05-01T08:00:00.000Z",
             "createdBy": {"role": "agent", "id": "bob", "name": "Bob"}, "history": [created],
             "version": Decimal(1)}
    image.update(values)
    return {k: v for k, v in image.items() if v is not None}


def with_event(image: dict, event: dict, **values) -> dict:
    return ticket(**{**{k: v for k, v in image.items() if k not in ("pk", "sk")}, **values,
                     "history": [*image["history"], event]})


def test_a_new_ticket_is_ticket_created_without_its_description():
    new = ticket()
    [event] = events_from_ticket_change(None, new)
    assert event.type == "ticket.created" and event.workspace == "demo" and event.occurred_at == new["createdAt"]
    data = event.data
    assert data["ticketId"] == "t_18f2b" and data["subject"] == "发票没收到" and data["status"] == "open"
    assert data["priority"] == "normal" and data["escalationLevel"] == 0 and data["customerId"] == "u_1"
    assert data["deadline"] == "2026-05-04T08:00:00.000Z"
    text = json.dumps(envelope(event), ensure_ascii=False)
    assert "description" not in data and "身份证" not in text
    assert events_from_ticket_change(None, new)[0].id == event.id


def test_ticket_status_change_carries_from_to_and_reason():
    old = ticket()
    new = with_event(old, {"type": "status", "at": "2026-05-02T10:00:00.000Z", "by": "bob", "byRole": "agent",
                           "from": "open", "to": "resolved", "reason": "已补开发票"},
                     status="resolved", version=Decimal(2), updatedAt="2026-05-02T10:00:00.000Z")
    [event] = events_from_ticket_change(old, new)
    assert event.type == "ticket.status_changed" and event.occurred_at == "2026-05-02T10:00:00.000Z"
    assert (event.data["from"], event.data["to"], event.data["reason"]) == ("open", "resolved", "已补开发票")
    assert event.data["by"] == {"id": "bob", "role": "agent"} and event.data["status"] == "resolved"


def test_escalation_is_ticket_escalated_only():
    old = ticket(assigneeId="bob", assigneeName="Bob")
    # what the escalation machine writes: level, priority, group, deadline, no assignee, same version
    new = with_event(old, {"type": "escalated", "at": "2026-05-04T08:00:00.123Z", "by": "sla", "level": Decimal(1),
                           "priority": "high", "group": "escalations", "deadline": "2026-05-05T08:00:00.000Z"},
                     escalationLevel=Decimal(1), priority="high", groupId="escalations",
                     deadline="2026-05-05T08:00:00.000Z", assigneeId=None, assigneeName=None)
    new.pop("assigneeId", None)
    [event] = events_from_ticket_change(old, new)
    assert event.type == "ticket.escalated" and event.data["level"] == 1 and event.data["priority"] == "high"
    assert event.data["group"] == "escalations" and event.data["escalationLevel"] == 1
    assert event.data["assignee"] is None


def test_comments_are_ticket_commented_with_the_internal_flag_and_no_text():
    old = ticket()
    new = with_event(old, {"type": "commented", "at": "2026-05-01T09:00:00.000Z", "by": "bob", "byRole": "agent",
                           "commentId": "cm_1", "internal": True}, version=Decimal(2))
    [event] = events_from_ticket_change(old, new)
    assert event.type == "ticket.commented"
    assert event.data["comment"] == {"commentId": "cm_1", "internal": True, "by": {"id": "bob", "role": "agent"},
                                     "createdAt": "2026-05-01T09:00:00.000Z"}
    assert "text" not in json.dumps(event.data)
    comment_item = {"pk": TPK, "sk": "CM#2026-05-01T09:00:00.000Z#cm_1", "commentId": "cm_1", "text": "内部备注",
                    "internal": True, "author": {"role": "agent", "id": "bob", "name": "Bob"}}
    assert events_from_ticket_change(None, comment_item) == []


def test_other_ticket_changes_are_ticket_updated():
    old = ticket()
    new = with_event(old, {"type": "updated", "at": "2026-05-01T09:30:00.000Z", "by": "sue", "byRole": "agent",
                           "changes": {"priority": "high", "deadline": "2026-05-02T09:30:00.000Z",
                                       "description": "(changed)"}},
                     priority="high", description="新的描述", version=Decimal(2))
    [event] = events_from_ticket_change(old, new)
    assert event.type == "ticket.updated" and event.data["change"] == "updated"
    assert event.data["changes"] == {"priority": "high", "deadline": "2026-05-02T09:30:00.000Z",
                                     "description": "(changed)"}
    assert "新的描述" not in json.dumps(event.data, ensure_ascii=False)
    linked = with_event(new, {"type": "linked", "at": "2026-05-01T09:40:00.000Z", "by": "sue", "byRole": "agent",
                              "conversationId": "c_2"}, conversations=["c_18f2a", "c_2"], version=Decimal(3))
    [event] = events_from_ticket_change(new, linked)
    assert event.type == "ticket.updated" and event.data["conversationId"] == "c_2"
    # trimming the history changes nothing that happened
    history = linked["history"]
    trimmed = ticket(history=[history[0], {"type": "trimmed", "at": "x", "count": 2}, *history[-1:]],
                     version=Decimal(3), conversations=["c_18f2a", "c_2"], priority="high")
    assert events_from_ticket_change(linked, trimmed) == []
    assert events_from_ticket_change(linked, None) == []
    # a change with no history event (by hand) is still an update
    [event] = events_from_ticket_change(linked, {**linked, "subject": "改过的主题"})
    assert event.type == "ticket.updated" and event.data["subject"] == "改过的主题"


# ---------------------------------------------------------------- dispatcher (no network)


def sub(sid: str, url: str = "https://hooks.example.com/x", events=("*",), workspace="demo", active=True):
    return Subscription(workspace, sid, url, tuple(events), "whsec_" + sid, active)


def event(n: int = 1, type_: str = "message.created", workspace: str = "demo") -> Event:
    return Event(f"evt_{n}", type_, workspace, "2026-05-01T08:00:00.000Z", {"n": n, "text": "你好"})


class Recorder:
    def __init__(self):
        self.results: list[tuple[float, DeliveryResult]] = []
        self.lock = threading.Lock()

    def record(self, result: DeliveryResult) -> None:
        with self.lock:
            self.results.append((time.monotonic(), result))

    def by_sub(self) -> dict[str, list[DeliveryResult]]:
        out: dict[str, list[DeliveryResult]] = {}
        for _, result in self.results:
            out.setdefault(result.subscription_id, []).append(result)
        return out


class ScriptedSender:
    def __init__(self, script: dict[str, list]):
        self.script = {k: list(v) for k, v in script.items()}
        self.calls: list[tuple[str, str, str, float]] = []

    def send(self, subscription, event, delivery_id, *, timeout_s):
        self.calls.append((subscription.id, event.id, delivery_id, timeout_s))
        step = self.script[subscription.id].pop(0) if len(self.script[subscription.id]) > 1 \
            else self.script[subscription.id][0]
        if isinstance(step, Exception):
            raise step
        return step


def test_only_matching_active_subscriptions_of_the_workspace_get_an_event():
    sender = ScriptedSender({s: [Attempt(200)] for s in ("all", "tickets", "off", "other")})
    recorder = Recorder()
    subs = [sub("all"), sub("tickets", events=("ticket.created",)), sub("off", active=False),
            sub("other", workspace="acme")]
    results = Dispatcher(sender, recorder).dispatch([event(1), event(2, "ticket.created")], subs)
    assert sorted((r.subscription_id, r.event_type) for r in results) == [
        ("all", "message.created"), ("all", "ticket.created"), ("tickets", "ticket.created")]
    assert all(r.ok and r.attempts == 1 and r.status_code == 200 and r.error is None for r in results)
    assert len(recorder.results) == 3
    assert Dispatcher(sender, recorder).dispatch([], subs) == []


def test_retry_rules():
    sender = ScriptedSender({
        "flaky": [Attempt(503), Attempt(None, "timeout after 5 s"), Attempt(200)],
        "gone": [Attempt(410, "HTTP 410")],
        "busy": [Attempt(429, "HTTP 429", retry_after_s=0.01), Attempt(204)],
        "dead": [Attempt(None, "connection refused")],
        "crash": [RuntimeError("boom")],
        "ssrf": [Attempt(None, "refused destination: url: 10.0.0.1 is not a public address", retryable=False)],
    })
    recorder = Recorder()
    dispatcher = Dispatcher(sender, recorder, attempts=3, backoff_s=(0.01, 0.02))
    results = {r.subscription_id: r for r in dispatcher.dispatch([event()], [sub(s) for s in sender.script])}
    assert results["flaky"].ok and results["flaky"].attempts == 3 and results["flaky"].status_code == 200
    assert not results["gone"].ok and results["gone"].attempts == 1 and results["gone"].error == "HTTP 410"
    assert results["busy"].ok and results["busy"].attempts == 2
    assert not results["dead"].ok and results["dead"].attempts == 3 and results["dead"].error == "connection refused"
    assert results["crash"].attempts == 3 and "RuntimeError: boom" in results["crash"].error
    assert results["ssrf"].attempts == 1 and results["ssrf"].error.startswith("refused destination")
    delivery_ids = {call[2] for call in sender.calls if call[0] == "flaky"}
    assert len(delivery_ids) == 1  # one delivery id across its attempts
    assert dispatcher._delay(1, Attempt(429, retry_after_s=30)) == 5.0  # Retry-After is honoured up to 5 s
    assert 0.008 <= dispatcher._delay(1, Attempt(500)) <= 0.012


def test_a_failing_recorder_does_not_stop_deliveries():
    class Broken:
        def record(self, result):
            raise RuntimeError("table gone")

    sender = ScriptedSender({"a": [Attempt(200)], "b": [Attempt(200)]})
    results = Dispatcher(sender, Broken()).dispatch([event()], [sub("a"), sub("b")])
    assert [r.ok for r in results] == [True, True]


def test_a_failing_subscriber_is_skipped_after_the_breaker_trips():
    sender = ScriptedSender({"dead": [Attempt(None, "connection refused")], "ok": [Attempt(200)]})
    recorder = Recorder()
    results = Dispatcher(sender, recorder, attempts=2, backoff_s=(0.01,), max_workers=2, per_subscription=1,
                         breaker=2).dispatch([event(n) for n in range(6)], [sub("dead"), sub("ok")])
    dead = [r for r in results if r.subscription_id == "dead"]
    assert [r.error.startswith(SKIPPED) for r in dead] == [False, False, True, True, True, True]
    assert sum(1 for c in sender.calls if c[0] == "dead") == 4
    assert all(r.ok for r in results if r.subscription_id == "ok")
    assert len(recorder.results) == 12


# ---------------------------------------------------------------- real HTTP servers on 127.0.0.1


class Hook:
    """An integrator's endpoint: records what arrives and answers as `behaviour` says."""

    def __init__(self, behaviour, secret: str | None = None):
        self.behaviour, self.secret = behaviour, secret
        self.received: list[dict] = []
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                entry = {"at": time.monotonic(), "headers": dict(self.headers), "body": body, "path": self.path}
                hook.received.append(entry)
                status, headers = hook.behaviour(hook, entry)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender gave up on us

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/kefu"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hooks():
    made: list[Hook] = []

    def make(behaviour, secret=None) -> Hook:
        made.append(Hook(behaviour, secret))
        return made[-1]

    yield make
    for hook in made:
        hook.close()


def healthy(hook, entry):
    ok = verify(hook.secret, entry["headers"].get("Kefu-Signature"), entry["body"], time.time())
    entry["verified"] = ok
    return (204 if ok else 401), {}


def flaky(hook, entry):
    return (500 if len(hook.received) <= 2 else 200), {}


def slow(hook, entry):
    hook.release.wait(3.0)
    return 200, {}


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


def test_deliveries_to_real_endpoints_are_signed_retried_and_isolated(hooks):
    good = hooks(healthy, secret="whsec_good")
    shaky = hooks(flaky)
    sleepy = hooks(slow)
    subs = [Subscription("demo", "good", good.url, ("*",), "whsec_good"), sub("shaky", shaky.url),
            sub("down", closed_port_url()), sub("slow", sleepy.url)]
    recorder = Recorder()
    dispatcher = Dispatcher(HttpSender(timeout_s=0.4, allow_private=True), recorder, attempts=3,
                            backoff_s=(0.05, 0.1), budget_s=10)
    the_event = Event("evt_abc", "message.created", "demo", "2026-05-01T08:00:03.000Z",
                      {"conversationId": "c_1", "text": "你好，世界"})
    start = time.monotonic()
    results = {r.subscription_id: r for r in dispatcher.dispatch([the_event], subs)}
    elapsed = time.monotonic() - start

    # the healthy subscriber got one signed delivery, promptly
    assert results["good"].ok and results["good"].attempts == 1 and results["good"].status_code == 204
    assert results["good"].duration_ms < 1000
    [got] = good.received
    assert got["verified"] and got["at"] - start < 1.0
    headers = got["headers"]
    assert headers["Kefu-Event"] == "message.created" and headers["User-Agent"] == "kefu-webhooks/1"
    assert headers["Kefu-Delivery"] == results["good"].delivery_id and headers["Kefu-Delivery"].startswith("whd_")
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Kefu-Signature"].startswith(f"t={headers['Kefu-Timestamp']},v1=")
    assert headers["Host"] == good.url.split("/")[2] and got["path"] == "/hooks/kefu"
    assert "你好，世界".encode() in got["body"]  # UTF-8, not \u escapes
    assert json.loads(got["body"]) == {"id": "evt_abc", "type": "message.created", "workspace": "demo",
                                       "occurredAt": "2026-05-01T08:00:03.000Z",
                                       "data": {"conversationId": "c_1", "text": "你好，世界"}}

    # 500, 500, 200: delivered on the third attempt
    assert results["shaky"].ok and results["shaky"].attempts == 3 and results["shaky"].status_code == 200
    assert len(shaky.received) == 3
    # nobody listening: retried, then failed
    assert not results["down"].ok and results["down"].attempts == 3 and results["down"].status_code is None
    assert results["down"].error == "connection refused"
    # slower than the timeout: every attempt times out
    assert not results["slow"].ok and results["slow"].attempts == 3 and "timeout" in results["slow"].error
    assert results["slow"].duration_ms >= 3 * 400
    # the healthy delivery was recorded while the slow one was still being retried
    recorded = {r.subscription_id: at for at, r in recorder.results}
    assert recorded["good"] < recorded["slow"] - 0.8
    assert len(recorder.results) == 4 and elapsed < 5


def test_the_time_budget_bounds_the_whole_call(hooks):
    sleepy = hooks(slow)
    good = hooks(healthy, secret="whsec_good")
    recorder = Recorder()
    dispatcher = Dispatcher(HttpSender(timeout_s=0.5, allow_private=True), recorder, attempts=10,
                            backoff_s=(0.05,), budget_s=1.2)
    subs = [Subscription("demo", "slow", sleepy.url, ("*",), "whsec_x"),
            Subscription("demo", "good", good.url, ("*",), "whsec_good")]
    start = time.monotonic()
    results = {r.subscription_id: r for r in dispatcher.dispatch([event()], subs)}
    assert time.monotonic() - start < 1.6
    assert results["good"].ok
    assert not results["slow"].ok and results["slow"].error.startswith(GAVE_UP) and results["slow"].attempts >= 2
    time.sleep(0.3)  # a worker still in flight at the deadline does not record a second result
    assert sorted(r.subscription_id for _, r in recorder.results) == ["good", "slow"]


def test_many_events_to_a_slow_subscriber_do_not_hold_up_the_others(hooks):
    sleepy = hooks(slow)
    good = hooks(healthy, secret="whsec_good")
    recorder = Recorder()
    dispatcher = Dispatcher(HttpSender(timeout_s=0.3, allow_private=True), recorder, attempts=2,
                            backoff_s=(0.05,), max_workers=4, per_subscription=2, breaker=3, budget_s=10)
    subs = [Subscription("demo", "slow", sleepy.url, ("*",), "whsec_x"),
            Subscription("demo", "good", good.url, ("*",), "whsec_good")]
    start = time.monotonic()
    results = dispatcher.dispatch([event(n) for n in range(6)], subs)
    good_results = [r for r in results if r.subscription_id == "good"]
    assert len(good_results) == 6 and all(r.ok for r in good_results)
    assert len(good.received) == 6 and max(e["at"] for e in good.received) - start < 1.0
    slow_results = [r for r in results if r.subscription_id == "slow"]
    assert not any(r.ok for r in slow_results) and any(r.error.startswith(SKIPPED) for r in slow_results)


def test_no_retry_on_client_errors_and_no_redirects_followed(hooks):
    target = hooks(lambda hook, entry: (200, {}))
    moved = hooks(lambda hook, entry: (302, {"Location": target.url}))
    missing = hooks(lambda hook, entry: (404, {}))
    limited = hooks(lambda hook, entry: ((429, {"Retry-After": "1"}) if len(hook.received) == 1 else (200, {})))
    recorder = Recorder()
    dispatcher = Dispatcher(HttpSender(timeout_s=1, allow_private=True), recorder, attempts=3, backoff_s=(0.05,))
    subs = [Subscription("demo", name, hook.url, ("*",), "whsec_x")
            for name, hook in (("moved", moved), ("missing", missing), ("limited", limited))]
    results = {r.subscription_id: r for r in dispatcher.dispatch([event()], subs)}
    assert results["moved"].attempts == 1 and results["moved"].status_code == 302
    assert "redirect" in results["moved"].error and target.received == []
    assert results["missing"].attempts == 1 and results["missing"].error == "HTTP 404"
    assert results["limited"].ok and results["limited"].attempts == 2
    first, second = limited.received
    assert second["at"] - first["at"] >= 0.9  # Retry-After: 1 was waited for


def test_the_sender_checks_the_destination_again_at_delivery_time(hooks, names):
    target = hooks(lambda hook, entry: (200, {}))
    sender = HttpSender(timeout_s=1)  # production: private addresses refused
    attempt = sender.send(Subscription("demo", "s", target.url.replace("http:", "https:"), ("*",), "whsec_x"),
                          event(), "whd_1", timeout_s=1)
    assert attempt.status is None and attempt.error.startswith("refused destination") and not attempt.should_retry()
    # a name that was public when subscribed and points inside now (DNS rebinding)
    names["hooks.example.com"] = ["10.0.0.7"]
    attempt = sender.send(sub("s"), event(), "whd_1", timeout_s=1)
    assert attempt.error.startswith("refused destination") and "non-public" in attempt.error
    names.pop("hooks.example.com")
    attempt = sender.send(sub("s"), event(), "whd_1", timeout_s=1)
    assert "does not resolve" in attempt.error and attempt.should_retry()
    assert target.received == []


def test_https_goes_to_the_checked_address_and_verifies_the_name(tmp_path, names):
    """The sender connects to the address check_destination approved, and TLS checks the certificate
    against the URL's host name (SNI), not against the address."""
    requests = pytest.importorskip("requests")
    cert, key = _self_signed(tmp_path, "hooks.kefu.test")
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            seen.append({"host": self.headers["Host"], "body": self.rfile.read(int(self.headers["Content-Length"]))})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        names["hooks.kefu.test"] = ["127.0.0.1"]
        names["other.kefu.test"] = ["127.0.0.1"]
        session = requests.Session()
        session.verify = str(cert)
        sender = HttpSender(session, timeout_s=2, allow_private=True)
        ok = sender.send(Subscription("demo", "s", f"https://hooks.kefu.test:{port}/in", ("*",), "whsec_x"),
                         event(), "whd_1", timeout_s=2)
        assert ok.ok, ok
        assert seen[0]["host"] == f"hooks.kefu.test:{port}"
        wrong = sender.send(Subscription("demo", "s", f"https://other.kefu.test:{port}/in", ("*",), "whsec_x"),
                            event(), "whd_1", timeout_s=2)
        assert not wrong.ok and wrong.error.startswith("TLS error") and len(seen) == 1
    finally:
        server.shutdown()
        server.server_close()


def _self_signed(tmp_path, name: str):
    x509 = pytest.importorskip("cryptography.x509")
    from datetime import datetime, timedelta, timezone

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


# ---------------------------------------------------------------- the store (moto)


@pytest.fixture
def store(monkeypatch):
    moto = pytest.importorskip("moto")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "KEFU_TABLE_DIRECTORY", "KEFU_TABLE_METRICS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from kefu import schema
    from kefu.adapters.webhook_store import DynamoWebhookStore

    with moto.mock_aws():
        import boto3

        client = boto3.client("dynamodb", region_name="us-east-1")
        for table in (schema.DIRECTORY, schema.METRICS):
            client.create_table(TableName=table.local_name, BillingMode="PAY_PER_REQUEST",
                                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                           {"AttributeName": "sk", "KeyType": "RANGE"}],
                                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                      {"AttributeName": "sk", "AttributeType": "S"}])
        yield DynamoWebhookStore()


def test_the_store_keeps_subscriptions_and_a_delivery_log(store):
    a = parse_subscription("demo", {"url": "https://hooks.example.com/a", "events": ["ticket.created"],
                                    "description": "CRM"}, allow_private=False)
    b = parse_subscription("demo", {"url": "https://hooks.example.com/b", "events": ["*"], "active": False},
                           allow_private=False)
    store.put_subscription(a)
    store.put_subscription(b)
    assert store.get_subscription("demo", a.id) == a
    assert store.get_subscription("acme", a.id) is None
    assert sorted(s.id for s in store.list_subscriptions("demo")) == sorted([a.id, b.id])
    assert store.subscriptions_for("demo") == [a]  # active ones only
    # cached: a change written elsewhere shows after the cache time; our own writes show at once
    c = parse_subscription("demo", {"url": "https://hooks.example.com/c", "events": ["*"]}, allow_private=False)
    other = type(store)()
    other.put_subscription(c)
    assert store.subscriptions_for("demo") == [a]
    store.put_subscription(update_subscription(b, {"active": True}, allow_private=False))
    assert sorted(s.id for s in store.subscriptions_for("demo")) == sorted([a.id, b.id, c.id])
    assert store.delete_subscription("demo", c.id) is True
    assert store.delete_subscription("demo", c.id) is False
    assert store.get_subscription("demo", c.id) is None

    for i, at in enumerate(("2026-05-01T08:00:00.000Z", "2026-05-01T08:00:02.000Z", "2026-05-01T08:00:01.000Z")):
        store.record(DeliveryResult(a.id, "demo", f"evt_{i}", "ticket.created", f"whd_{i}", i != 1, 1 + i,
                                    200 if i != 1 else 500, None if i != 1 else "HTTP 500", 12 * i, at))
    log = store.deliveries("demo", a.id)
    assert [d.delivery_id for d in log] == ["whd_1", "whd_2", "whd_0"]  # newest first
    assert log[0].error == "HTTP 500" and log[0].status_code == 500 and not log[0].ok and log[0].attempts == 2
    assert [d.delivery_id for d in store.deliveries("demo", a.id, limit=1)] == ["whd_1"]
    assert store.deliveries("demo", b.id) == []
    item = store.client.get_item(TableName=store.metrics, Key={"pk": {"S": f"demo#WHD#{a.id}"},
                                                               "sk": {"S": "2026-05-01T08:00:02.000Z#whd_1"}})["Item"]
    assert 29 * 86400 < int(item["expiresAt"]["N"]) - time.time() <= 30 * 86400


def test_a_rating_on_a_closed_conversation_is_csat_submitted():
    from decimal import Decimal

    from kefu.webhooks import events_from_stream_record

    closed = {"pk": "ws1#C#c_1", "sk": "META", "status": "closed", "customerId": "cust-1", "agentId": "bob",
              "channel": "web", "closedAt": "2026-11-21T10:00:00.000Z"}
    rated = {**closed, "csat": {"score": Decimal("4"), "comment": "很快", "at": "2026-11-21T10:01:00.000Z"}}
    (event,) = events_from_stream_record("MODIFY", closed, rated)
    assert event.type == "csat.submitted" and event.workspace == "ws1"
    assert event.data["score"] == 4 and event.data["comment"] == "很快" and event.data["agentId"] == "bob"
    assert events_from_stream_record("MODIFY", rated, {**rated, "updatedAt": "later"}) == []  # once
    assert "nps" not in event.data  # not asked, not answered
    with_nps = {**closed, "csat": {**rated["csat"], "nps": Decimal("9")}}
    (event,) = events_from_stream_record("MODIFY", closed, with_nps)
    assert event.data["nps"] == 9 and isinstance(event.data["nps"], int)
