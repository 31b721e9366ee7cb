"""Tickets on the local stack: the REST API, tickets from chats, and escalation by the real Step Functions
state machine (moto's engine runs the same ASL as the CDK stack) with deadlines of seconds."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest
import requests

from .conftest import chat, wait_for


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


class Api:
    def __init__(self, world, who: str, kind: str = "agent"):
        self.base = f"{world.stack.api_url}/workspaces/{world.workspace}"
        self.headers = {"Authorization": f"Bearer {world.token(kind, who)}"}

    def __call__(self, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, self.base + path, headers=self.headers, timeout=15, **kw)


@pytest.fixture
def desk(world):
    world.agent("bob", "Bob")
    world.agent("sue", "Sue", role="supervisor")
    world.agent("ada", "Ada", role="admin")
    return world


def test_ticket_lifecycle_over_rest(desk):
    bob, ada = Api(desk, "bob"), Api(desk, "ada")
    created = bob("POST", "/tickets", json={"subject": "发票没收到", "description": "订单 A-1001 的发票",
                                           "priority": "high", "customerId": "c-9", "customerName": "王五"})
    assert created.status_code == 201, created.text
    ticket = created.json()
    assert ticket["status"] == "open" and ticket["priority"] == "high" and ticket["version"] == 1
    assert ticket["createdBy"]["id"] == "bob" and ticket["customer"] == {"id": "c-9", "name": "王五"}
    assert 86390 <= (_parse(ticket["deadline"]) - datetime.now(timezone.utc)).total_seconds() <= 86401
    tid = ticket["ticketId"]

    # changes are versioned: a stale version is a 409 with the current one
    patched = bob("PATCH", f"/tickets/{tid}", json={"priority": "urgent", "assigneeId": "bob", "version": 1}).json()
    assert patched["priority"] == "urgent" and patched["assignee"] == {"id": "bob", "name": "Bob"}
    assert (_parse(patched["deadline"]) - datetime.now(timezone.utc)).total_seconds() <= 4 * 3600 + 1
    stale = bob("PATCH", f"/tickets/{tid}", json={"subject": "改", "version": 1})
    assert stale.status_code == 409 and stale.json()["error"]["details"] == {"version": 2}
    assert bob("PATCH", f"/tickets/{tid}", json={"assigneeId": None}).json()["assignee"] is None
    assert bob("PATCH", f"/tickets/{tid}", json={"subject": None}).status_code == 422
    assert bob("PATCH", f"/tickets/{tid}", json={"assigneeId": "ghost"}).status_code == 422

    # status rules
    assert bob("POST", f"/tickets/{tid}/status", json={"status": "resolved"}).json()["status"] == "resolved"
    again = bob("POST", f"/tickets/{tid}/status", json={"status": "resolved"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"
    no_reason = bob("POST", f"/tickets/{tid}/status", json={"status": "open"})
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["error"]["message"]
    assert bob("POST", f"/tickets/{tid}/status", json={"status": "closed"}).json()["status"] == "closed"
    assert bob("POST", f"/tickets/{tid}/status", json={"status": "closed"}).status_code == 409
    assert bob("POST", f"/tickets/{tid}/status", json={"status": "pending"}).status_code == 409
    assert bob("POST", f"/tickets/{tid}/status", json={"status": "gone"}).status_code == 422
    reopened = bob("POST", f"/tickets/{tid}/status", json={"status": "open", "reason": "客户又来问了"}).json()
    assert reopened["status"] == "open"

    # comments: internal notes are not for the customer
    assert bob("POST", f"/tickets/{tid}/comments", json={"text": "已联系财务"}).status_code == 201
    assert bob("POST", f"/tickets/{tid}/comments", json={"text": "内部备注", "internal": True}).status_code == 201
    assert bob("POST", f"/tickets/{tid}/comments", json={"text": ""}).status_code == 422
    assert [c["text"] for c in bob("GET", f"/tickets/{tid}/comments").json()["items"]] == ["已联系财务", "内部备注"]
    customer = Api(desk, "c-9", kind="visitor")
    assert [c["text"] for c in customer("GET", f"/tickets/{tid}/comments").json()["items"]] == ["已联系财务"]
    assert customer("PATCH", f"/tickets/{tid}", json={"subject": "x"}).status_code == 403
    assert customer("POST", "/tickets", json={"subject": "x"}).status_code == 403
    assert Api(desk, "c-other", kind="visitor")("GET", f"/tickets/{tid}").status_code == 404

    # the whole history, in order
    final = bob("GET", f"/tickets/{tid}").json()
    assert [e["type"] for e in final["history"]] == ["created", "updated", "updated", "status", "status", "status",
                                                     "commented", "commented"]
    assert [e.get("to") for e in final["history"] if e["type"] == "status"] == ["resolved", "closed", "open"]
    assert final["history"][5]["reason"] == "客户又来问了"

    # settings are for supervisors to read and admins to change, and validated
    assert bob("GET", "/ticket-settings").status_code == 403
    assert Api(desk, "sue")("PUT", "/ticket-settings", json={"maxLevel": 2}).status_code == 403
    assert ada("PUT", "/ticket-settings", json={"slaSeconds": {"normal": -1}}).status_code == 422
    assert ada("PUT", "/ticket-settings", json={"maxLevel": 2}).json()["maxLevel"] == 2


def test_lists_filter_and_page_and_stay_in_their_workspace(desk, world_factory):
    bob = Api(desk, "bob")
    ids = [bob("POST", "/tickets", json={"subject": f"t{i}", "priority": "low" if i % 2 else "normal"}).json()["ticketId"]
           for i in range(5)]
    seen, cursor = [], None
    while True:
        page = bob("GET", "/tickets", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [t["ticketId"] for t in page["items"]]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert seen == ids[::-1]  # newest first, each once
    low = bob("GET", "/tickets", params={"priority": "low"}).json()["items"]
    assert sorted(t["ticketId"] for t in low) == sorted(ids[1::2])
    assert bob("GET", "/tickets", params={"status": "closed"}).json()["items"] == []
    assert bob("GET", "/tickets", params={"cursor": "garbage!"}).status_code == 422
    assert bob("GET", "/tickets", params={"limit": 0}).status_code == 422

    other = world_factory()
    other.agent("bob", "Bob")
    intruder = Api(other, "bob")
    assert intruder("GET", "/tickets").json()["items"] == []
    # another workspace's ticket ids and cursors are not found / refused
    foreign = Api(other, "bob")
    foreign.base = bob.base
    assert foreign("GET", f"/tickets/{ids[0]}").status_code == 404
    first = bob("GET", "/tickets", params={"limit": 1}).json()["nextCursor"]
    assert intruder("GET", "/tickets", params={"cursor": first}).status_code == 422
    assert intruder("GET", f"/tickets/{ids[0]}").status_code == 404


def test_offline_forms_and_unresolved_closes_become_tickets(desk, store):
    customer, agent, conversation = chat(desk, messages=1)
    agent.request({"action": "message", "conversationId": conversation, "clientMessageId": "a1",
                   "text": "我帮您查一下"}, type="ack")
    closed = agent.request({"action": "close", "conversationId": conversation, "resolved": False}, type="closed")
    assert closed["ticketId"]
    bob = Api(desk, "bob")
    ticket = bob("GET", f"/tickets/{closed['ticketId']}").json()
    assert ticket["source"] == "conversation" and ticket["conversations"] == [conversation]
    assert ticket["customer"]["id"] == "cust-1" and "我帮您查一下" in ticket["description"]

    desk.settings(businessHours={"timezone": "Asia/Shanghai", "weekly": {}})  # closed all week
    late = desk.customer("late-1", name="赵六")
    ack = late.request({"action": "message", "clientMessageId": "o1", "text": "在吗"}, type="ack")
    late.expect(type="offline")
    reply = late.request({"action": "offline_form", "conversationId": ack["conversationId"], "name": "赵六",
                          "contact": "zhao@example.com", "question": "发票怎么开？"}, type="offline_form")
    form_ticket = bob("GET", f"/tickets/{reply['ticketId']}").json()
    assert form_ticket["source"] == "offline_form" and form_ticket["contact"] == "zhao@example.com"
    assert form_ticket["description"] == "发票怎么开？" and form_ticket["customer"] == {"id": "late-1", "name": "赵六"}
    # the customer finds it among their tickets
    mine = Api(desk, "late-1", kind="visitor")("GET", "/tickets").json()["items"]
    assert [t["ticketId"] for t in mine] == [reply["ticketId"]]


# ---------------------------------------------------------------- escalation (real state machine)


@pytest.fixture
def sfn(stack):
    return stack.client("stepfunctions")


@pytest.fixture
def alerts(stack):
    """An SQS queue subscribed to the escalation alert topic."""
    sqs, sns = stack.client("sqs"), stack.client("sns")
    url = sqs.create_queue(QueueName=f"alerts-{time.time_ns()}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    subscription = sns.subscribe(TopicArn=stack.alert_topic_arn, Protocol="sqs", Endpoint=arn)["SubscriptionArn"]

    def received(ticket_id: str) -> list[dict]:
        found = []
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            body = json.loads(json.loads(message["Body"])["Message"])
            if body.get("ticketId") == ticket_id:
                found.append(body)
        return found

    yield received
    sns.unsubscribe(SubscriptionArn=subscription)


def _execution(stack, ticket: dict) -> str:
    name = f"{ticket['ticketId']}-{int(_parse(ticket['deadline']).timestamp())}"
    return stack.escalation_arn.replace(":stateMachine:", ":execution:") + f":{name}"


def test_an_overdue_ticket_climbs_each_level_then_alerts(desk, stack, sfn, alerts):
    Api(desk, "ada")("PUT", "/ticket-settings", json={
        "slaSeconds": {"normal": 3, "high": 2, "urgent": 2}, "escalationGroup": "主管组", "maxLevel": 2})
    bob = Api(desk, "bob")
    ticket = bob("POST", "/tickets", json={"subject": "退款超时", "assigneeId": "bob"}).json()
    tid = ticket["ticketId"]
    execution = _execution(stack, ticket)
    wait_for(lambda: _status(sfn, execution), lambda s: s == "RUNNING", timeout=15)

    level1 = wait_for(lambda: bob("GET", f"/tickets/{tid}").json(), lambda t: t["escalationLevel"] >= 1)
    assert level1["escalationLevel"] == 1 and level1["priority"] == "high" and level1["groupId"] == "主管组"
    assert level1["assignee"] is None and level1["status"] == "open"
    event = level1["history"][-1]
    assert event["type"] == "escalated" and event["by"] == "sla" and event["level"] == 1
    assert _parse(level1["deadline"]) - _parse(ticket["deadline"]) == _parse(event["deadline"]) - _parse(ticket["deadline"])
    assert (_parse(level1["deadline"]) - _parse(ticket["deadline"])).total_seconds() == 2  # the high SLA

    level2 = wait_for(lambda: bob("GET", f"/tickets/{tid}").json(), lambda t: t["escalationLevel"] >= 2)
    assert level2["priority"] == "urgent" and [e["level"] for e in level2["history"] if e["type"] == "escalated"] == [1, 2]

    alerted = wait_for(lambda: bob("GET", f"/tickets/{tid}").json(), lambda t: "alert" in t)
    assert alerted["alert"]["reason"] == "overdue at the highest escalation level"
    assert wait_for(lambda: _status(sfn, execution), lambda s: s != "RUNNING") == "SUCCEEDED"
    notes = wait_for(lambda: alerts(tid), bool, timeout=10)
    assert notes[0]["type"] == "ticket.alert" and notes[0]["workspace"] == desk.workspace
    # the escalation machine's own steps did not start further runs
    runs = sfn.list_executions(stateMachineArn=stack.escalation_arn)["executions"]
    assert [r["name"] for r in runs if r["name"].startswith(tid)] == [execution.rsplit(":", 1)[1]]
    # the analytics: one ticket opened, escalated once as a ticket, two deadlines missed (issue 7)
    from kefu import wiring

    day = ticket["createdAt"][:10]
    counted = wait_for(lambda: wiring.analytics_store().read(desk.workspace, "D", day, day).get((day, "all"), {}),
                       lambda c: c.get("slaBreaches", 0) >= 2)
    assert (counted["ticketsOpened"], counted["ticketsEscalated"], counted["slaBreaches"]) == (1, 1, 2)


def test_resolving_a_ticket_ends_its_escalation_early(desk, stack, sfn):
    Api(desk, "ada")("PUT", "/ticket-settings", json={"slaSeconds": {"normal": 4, "high": 2, "urgent": 2}})
    bob = Api(desk, "bob")
    ticket = bob("POST", "/tickets", json={"subject": "物流查询"}).json()
    execution = _execution(stack, ticket)
    wait_for(lambda: _status(sfn, execution), lambda s: s == "RUNNING", timeout=15)
    bob("POST", f"/tickets/{ticket['ticketId']}/status", json={"status": "resolved"})
    assert wait_for(lambda: _status(sfn, execution), lambda s: s != "RUNNING", timeout=15) == "ABORTED"
    time.sleep(max(0.0, (_parse(ticket["deadline"]) - datetime.now(timezone.utc)).total_seconds()) + 2)
    after = bob("GET", f"/tickets/{ticket['ticketId']}").json()
    assert after["escalationLevel"] == 0 and after["priority"] == "normal" and "alert" not in after
    assert [e["type"] for e in after["history"]] == ["created", "status"]


def test_a_new_priority_restarts_the_clock_with_a_new_run(desk, stack, sfn):
    Api(desk, "ada")("PUT", "/ticket-settings", json={"slaSeconds": {"normal": 600, "urgent": 3}, "maxLevel": 1})
    bob = Api(desk, "bob")
    ticket = bob("POST", "/tickets", json={"subject": "账号被盗"}).json()
    first = _execution(stack, ticket)
    wait_for(lambda: _status(sfn, first), lambda s: s == "RUNNING", timeout=15)
    urgent = bob("PATCH", f"/tickets/{ticket['ticketId']}", json={"priority": "urgent"}).json()
    second = _execution(stack, urgent)
    assert wait_for(lambda: _status(sfn, first), lambda s: s != "RUNNING", timeout=15) == "ABORTED"
    escalated = wait_for(lambda: bob("GET", f"/tickets/{ticket['ticketId']}").json(),
                         lambda t: t["escalationLevel"] >= 1)
    assert escalated["priority"] == "urgent"  # urgent stays urgent; the group changes
    assert _status(sfn, second) in ("RUNNING", "SUCCEEDED")


def test_a_failing_step_is_retried_then_caught_and_alerted(desk, stack, sfn, alerts):
    Api(desk, "ada")("PUT", "/ticket-settings", json={"slaSeconds": {"normal": 2}})
    bob = Api(desk, "bob")
    ticket = bob("POST", "/tickets", json={"subject": "损坏的工单"}).json()
    execution = _execution(stack, ticket)
    wait_for(lambda: _status(sfn, execution), lambda s: s == "RUNNING", timeout=15)
    # damage the item the way a bad migration would: the history is no longer a list
    stack.client("dynamodb").update_item(
        TableName="kefu-tickets", Key={"pk": {"S": f"{desk.workspace}#T#{ticket['ticketId']}"}, "sk": {"S": "TICKET"}},
        UpdateExpression="SET history = :broken", ExpressionAttributeValues={":broken": {"S": "oops"}})
    assert wait_for(lambda: _status(sfn, execution), lambda s: s != "RUNNING", timeout=30) == "SUCCEEDED"
    events = sfn.get_execution_history(executionArn=execution)["events"]
    failures = [e for e in events if e["type"] == "TaskFailed"]
    assert len(failures) == 3  # the first try and two retries
    assert all(f["taskFailedEventDetails"]["error"] == "DynamoDB.ValidationException" for f in failures)
    damaged = bob("GET", f"/tickets/{ticket['ticketId']}").json()
    assert damaged["alert"]["reason"] == "an escalation step failed"
    assert damaged["alert"]["cause"] == "DynamoDB.ValidationException"
    assert damaged["escalationLevel"] == 0  # the failed step changed nothing
    notes = wait_for(lambda: alerts(ticket["ticketId"]), bool, timeout=10)
    assert notes[0]["reason"] == "an escalation step failed"


def _status(sfn, execution_arn: str) -> str | None:
    try:
        return sfn.describe_execution(executionArn=execution_arn)["status"]
    except sfn.exceptions.ExecutionDoesNotExist:
        return None
