"""Retention of tickets and business events on the local stack (kefu.retention): in a workspace that keeps data
one day, a closed ticket and its comments carry the TTL closedAt + 1 day, an open one none, a reopened one loses
it; business events expire a day after they are stored (at most 400 days in any workspace). The TTL attribute is
the one the tables have TTL enabled on (kefu.schema, the same definitions as the CDK stack)."""

from __future__ import annotations

import secrets
import time
from datetime import datetime

import requests
from kefu import schema, tokens

from .conftest import wait_for

DAY_S = 86400


def _at(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


class Desk:
    def __init__(self, world, retention_days: int | None):
        self.world = world
        world.agent("ada", "Ada", role="admin")
        world.agent("bob", "Bob")
        self.base = f"{world.stack.api_url}/workspaces/{world.workspace}"
        self.dynamodb = world.stack.client("dynamodb")
        if retention_days is not None:
            put = self.call("PUT", "/privacy", "ada", json={"retentionDays": retention_days})
            assert put.status_code == 200 and put.json()["retentionDays"] == retention_days, put.text

    def call(self, method: str, path: str, who: str = "bob", kind: str = "agent", **kw) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.world.token(kind, who)}"}
        return requests.request(method, self.base + path, headers=headers, timeout=15, **kw)

    def status(self, ticket_id: str, status: str, **extra) -> dict:
        answer = self.call("POST", f"/tickets/{ticket_id}/status", json={"status": status, **extra})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def items(self, ticket_id: str) -> dict[str, dict]:
        """The ticket's items as stored: sk -> item."""
        page = self.dynamodb.query(TableName=schema.TICKETS.local_name, KeyConditionExpression="pk = :pk",
                                   ExpressionAttributeValues={":pk": {"S": f"{self.world.workspace}#T#{ticket_id}"}},
                                   ConsistentRead=True)
        return {item["sk"]["S"]: item for item in page["Items"]}

    def expiries(self, ticket_id: str) -> dict[str, int | None]:
        return {sk: int(item["expiresAt"]["N"]) if "expiresAt" in item else None
                for sk, item in self.items(ticket_id).items()}


def _status_at(ticket: dict, to: str) -> int:
    return _at(next(e for e in reversed(ticket["history"]) if e.get("type") == "status" and e["to"] == to)["at"])


def test_the_tables_expire_items_on_expires_at(stack):
    dynamodb = stack.client("dynamodb")
    for table in (schema.TICKETS, schema.METRICS):
        ttl = dynamodb.describe_time_to_live(TableName=table.local_name)["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiresAt"}, table.id


def test_a_closed_ticket_and_its_comments_expire_a_retention_after_the_close(world):
    desk = Desk(world, retention_days=1)
    created = desk.call("POST", "/tickets", json={"subject": "发票没收到", "customerId": "c-1"})
    assert created.status_code == 201, created.text
    tid = created.json()["ticketId"]
    assert desk.call("POST", f"/tickets/{tid}/comments", json={"text": "已联系财务"}).status_code == 201
    assert set(desk.expiries(tid).values()) == {None}  # open: kept however long it stays open

    pending = desk.status(tid, "pending")
    assert set(desk.expiries(tid).values()) == {None}
    closed = desk.status(tid, "closed")
    closed_at = _status_at(closed, "closed")
    assert closed["version"] == pending["version"] + 1
    assert desk.expiries(tid)["TICKET"] == closed_at + DAY_S  # closedAt + retentionDays (whole seconds)
    assert abs(desk.expiries(tid)["TICKET"] - (time.time() + DAY_S)) < 60
    # the comment written while it was open follows (the ticket_events function, from the stream)
    wait_for(lambda: desk.expiries(tid), lambda e: set(e.values()) == {closed_at + DAY_S})
    # a comment on the closed ticket gets the ticket's expiry at once
    assert desk.call("POST", f"/tickets/{tid}/comments", json={"text": "客户回信了"}).status_code == 201
    late = [e for sk, e in desk.expiries(tid).items() if sk.startswith("CM#")]
    assert len(late) == 2 and set(late) == {closed_at + DAY_S}

    # reopened: kept again, comments too
    desk.status(tid, "open", reason="还没收到")
    assert desk.expiries(tid)["TICKET"] is None
    wait_for(lambda: desk.expiries(tid), lambda e: set(e.values()) == {None})
    # resolved again: the clock starts from the new resolution
    resolved = desk.status(tid, "resolved")
    resolved_at = _status_at(resolved, "resolved")
    assert resolved_at >= closed_at
    wait_for(lambda: desk.expiries(tid), lambda e: set(e.values()) == {resolved_at + DAY_S})

    # another open ticket of the workspace keeps no expiry
    other = desk.call("POST", "/tickets", json={"subject": "还在处理"}).json()["ticketId"]
    assert desk.expiries(other) == {"TICKET": None}


def test_a_ticket_in_a_workspace_with_the_default_retention_expires_a_year_after_its_close(world):
    desk = Desk(world, retention_days=None)  # never set: 365 days
    tid = desk.call("POST", "/tickets", json={"subject": "退款"}).json()["ticketId"]
    closed = desk.status(tid, "closed")
    assert desk.expiries(tid)["TICKET"] == _status_at(closed, "closed") + 365 * DAY_S


def _event_expiry(desk, visitor: str, event_id: str) -> int:
    item = desk.dynamodb.get_item(TableName=schema.METRICS.local_name, ConsistentRead=True, Key={
        "pk": {"S": f"{desk.world.workspace}#V#{visitor}"}, "sk": {"S": f"EV#{event_id}"}})["Item"]
    return int(item["expiresAt"]["N"])


def test_business_events_expire_with_the_workspaces_retention_at_most_400_days(world_factory):
    for days, expected in ((1, DAY_S), (1830, 400 * DAY_S), (None, 365 * DAY_S)):
        desk = Desk(world_factory(), retention_days=days)
        visitor, event_id = "c-" + secrets.token_hex(3), "order-" + secrets.token_hex(4)
        bearer = {"Authorization": "Bearer " + tokens.issue(desk.world.key, kind="visitor",
                                                            workspace=desk.world.workspace, subject=visitor)}
        before = int(time.time())
        stored = requests.post(f"{desk.base}/events", headers=bearer, timeout=15,
                               json={"eventId": event_id, "type": "order_placed", "value": 99.5})
        assert stored.status_code == 200 and stored.json()["duplicate"] is False, stored.text
        after = int(time.time())
        assert before + expected <= _event_expiry(desk, visitor, event_id) <= after + expected, days


def test_a_visitors_experiment_markers_expire_with_the_workspaces_retention(world):
    """Seen, exposed, converted and bought: every per-visitor marker carries the workspace's TTL (the per-variant
    counters, which hold no identity, do not)."""
    desk = Desk(world, retention_days=1)
    created = desk.call("POST", "/experiments", "ada", json={
        "name": "greeting", "kind": "greeting", "variants": [{"id": "a", "weight": 1, "value": "hi"},
                                                             {"id": "b", "weight": 1, "value": "hello"}]})
    assert created.status_code == 201, created.text
    experiment = created.json()["experimentId"]
    assert desk.call("POST", f"/experiments/{experiment}/start", "ada").ok
    visitor = "v-" + secrets.token_hex(3)
    before = int(time.time())
    assert desk.call("GET", "/experiments/assignments", visitor, kind="visitor").ok  # seen
    exposed = desk.call("GET", "/experiments/assignments", visitor, kind="visitor", params={"expose": experiment})
    assert exposed.json()["assignments"][0]["exposed"] is True, exposed.text
    variant = exposed.json()["assignments"][0]["variantId"]
    event = desk.call("POST", "/events", visitor, kind="visitor", json={"eventId": "o-1", "type": "order_placed"})
    assert event.status_code == 200 and event.json()["duplicate"] is False, event.text
    after = int(time.time())
    ws = world.workspace
    keys = {"seen": (f"{ws}#SEEN", visitor), "bought": (f"{ws}#BUY", visitor),
            "exposed": (f"{ws}#EXP#{experiment}", f"X#{visitor}"), "converted": (f"{ws}#EXP#{experiment}", f"C#{visitor}"),
            "counters": (f"{ws}#EXP#{experiment}", f"N#{variant}")}
    stored = {name: desk.dynamodb.get_item(TableName=schema.METRICS.local_name, ConsistentRead=True,
                                           Key={"pk": {"S": pk}, "sk": {"S": sk}}).get("Item")
              for name, (pk, sk) in keys.items()}
    assert all(stored.values()), {k: bool(v) for k, v in stored.items()}
    for name in ("seen", "bought", "exposed", "converted"):
        assert before + DAY_S <= int(stored[name]["expiresAt"]["N"]) <= after + DAY_S, name
    assert "expiresAt" not in stored["counters"]
