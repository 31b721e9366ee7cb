"""Tickets: status rules, SLA deadlines, the escalation plan and the state machine's shape."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from kefu import escalation
from kefu.errors import Conflict, Forbidden, InvalidRequest, NotFound
from kefu.models import Agent, Conversation, Principal
from kefu.tickets import (
    DEFAULT_SLA_S,
    TRANSITIONS,
    TicketService,
    TicketSettings,
    escalation_input,
    escalation_plan,
    execution_name,
)

from .fakes import MemoryStore, MemoryTicketStore

AGENT = Principal("demo", "agent", "bob", "Bob", agent_role="agent")
SUPER = Principal("demo", "agent", "sue", "Sue", agent_role="supervisor")
CUSTOMER = Principal("demo", "customer", "c1", "张三")
OTHER_CUSTOMER = Principal("demo", "customer", "c2", "李四")
STRANGER = Principal("other", "agent", "bob", "Bob", agent_role="admin")


@pytest.fixture
def service():
    store = MemoryStore()
    store.put_agent(Agent("demo", "bob", "Bob"))
    store.conversations[("demo", "conv1")] = Conversation("demo", "conv1", "c1", "张三", agent_id="bob",
                                                           status="assigned", group="售后")
    return TicketService(MemoryTicketStore(), store, store)


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_a_new_ticket_has_an_sla_deadline_by_priority_and_a_created_event(service):
    before = datetime.now(timezone.utc)
    ticket = service.create("demo", subject="  发票  没收到 ", description="订单 123", by=AGENT, priority="high")
    assert ticket.subject == "发票 没收到" and ticket.status == "open" and ticket.version == 1
    due = _parse(ticket.deadline) - before
    assert timedelta(hours=24) <= due <= timedelta(hours=24, seconds=2)
    assert _parse(ticket.deadline).microsecond == 0  # whole seconds (Step Functions waits to the second)
    assert [e["type"] for e in ticket.history] == ["created"] and ticket.history[0]["by"] == "bob"
    normal = service.create("demo", subject="x", by=AGENT)
    assert timedelta(hours=72) - timedelta(seconds=1) <= _parse(normal.deadline) - before  # the spec's default


def test_workspace_sla_settings_are_validated():
    settings = TicketSettings.from_dict({"slaSeconds": {"normal": 30}, "escalationGroup": "主管", "maxLevel": 2})
    assert settings.sla_s["normal"] == 30 and settings.sla_s["urgent"] == DEFAULT_SLA_S["urgent"]
    for bad in ({"slaSeconds": {"critical": 5}}, {"slaSeconds": {"normal": 0}}, {"slaSeconds": {"normal": "1h"}},
                {"slaSeconds": []}, {"maxLevel": 0}, {"maxLevel": True}, {"escalationGroup": ""}, {"colour": "red"},
                []):
        with pytest.raises(InvalidRequest):
            TicketSettings.from_dict(bad)
    assert TicketSettings.from_dict(settings.to_dict()) == settings


def test_bad_tickets_are_refused_with_a_reason(service):
    for kwargs in ({"subject": "  "}, {"subject": "x" * 201}, {"subject": "x", "priority": "p1"},
                   {"subject": "x", "assignee_id": "ghost"}):
        with pytest.raises(InvalidRequest):
            service.create("demo", by=AGENT, **kwargs)
    with pytest.raises(NotFound):
        service.create("demo", subject="x", by=AGENT, conversation_id="nope")


def test_a_ticket_from_a_conversation_links_it_and_takes_its_customer(service):
    ticket = service.create("demo", subject="退款没到", by=AGENT, conversation_id="conv1")
    assert ticket.conversations == ("conv1",) and ticket.customer_id == "c1" and ticket.customer_name == "张三"
    # an agent who is not in the conversation cannot see it (supervisors can)
    outsider = Principal("demo", "agent", "eve", "Eve", agent_role="agent")
    with pytest.raises(NotFound):
        service.create("demo", subject="x", by=outsider, conversation_id="conv1")
    assert service.create("demo", subject="x", by=SUPER, conversation_id="conv1").conversations == ("conv1",)


def test_status_changes_follow_the_rules_and_are_recorded(service):
    ticket = service.create("demo", subject="x", by=AGENT)
    ticket = service.change_status("demo", ticket.id, "pending", AGENT)
    ticket = service.change_status("demo", ticket.id, "resolved", AGENT)
    with pytest.raises(Conflict, match="already resolved"):
        service.change_status("demo", ticket.id, "resolved", AGENT)
    with pytest.raises(InvalidRequest, match="reason"):
        service.change_status("demo", ticket.id, "open", AGENT)
    ticket = service.change_status("demo", ticket.id, "closed", AGENT)
    with pytest.raises(Conflict, match="already closed"):
        service.change_status("demo", ticket.id, "closed", AGENT)
    with pytest.raises(Conflict, match="closed ticket cannot become pending"):
        service.change_status("demo", ticket.id, "pending", AGENT)
    reopened = service.change_status("demo", ticket.id, "open", AGENT, reason="客户说还没收到")
    assert reopened.deadline != ticket.deadline or reopened.deadline  # a fresh SLA clock
    events = [(e["type"], e.get("from"), e.get("to")) for e in reopened.history]
    assert events == [("created", None, None), ("status", "open", "pending"), ("status", "pending", "resolved"),
                      ("status", "resolved", "closed"), ("status", "closed", "open")]
    assert reopened.history[-1]["reason"] == "客户说还没收到" and reopened.version == 5
    with pytest.raises(InvalidRequest):
        service.change_status("demo", ticket.id, "done", AGENT)
    assert set(TRANSITIONS) == {"open", "pending", "resolved", "closed"}


def test_a_stale_version_is_a_conflict_not_an_overwrite(service):
    ticket = service.create("demo", subject="x", by=AGENT)
    service.update("demo", ticket.id, {"subject": "y"}, AGENT, expected_version=1)
    with pytest.raises(Conflict) as raised:
        service.update("demo", ticket.id, {"subject": "z"}, AGENT, expected_version=1)
    assert raised.value.details == {"version": 2}
    # the store's own condition catches a writer that read before the other's change
    stale = replace(service.store.get_ticket("demo", ticket.id), version=1)
    from kefu.ports import StateConflict

    with pytest.raises(StateConflict):
        service.store.update_ticket(stale, {"subject": "w"}, {"type": "updated", "at": "now"})


def test_a_new_priority_moves_the_deadline_and_assignees_must_exist(service):
    ticket = service.create("demo", subject="x", by=AGENT)
    urgent = service.update("demo", ticket.id, {"priority": "urgent", "assignee_id": "bob"}, AGENT)
    assert _parse(urgent.deadline) - datetime.now(timezone.utc) <= timedelta(hours=4, seconds=1)
    assert urgent.assignee_name == "Bob" and urgent.history[-1]["changes"]["priority"] == "urgent"
    with pytest.raises(InvalidRequest):
        service.update("demo", ticket.id, {"assignee_id": "ghost"}, AGENT)
    assert service.update("demo", ticket.id, {"priority": "urgent"}, AGENT).version == urgent.version  # no change


def test_customers_see_only_their_own_tickets_and_public_comments(service):
    mine = service.create("demo", subject="mine", by=AGENT, customer_id="c1")
    service.create("demo", subject="theirs", by=AGENT, customer_id="c2")
    with pytest.raises(NotFound):
        service.get("demo", mine.id, OTHER_CUSTOMER)
    with pytest.raises(NotFound):
        service.get("demo", mine.id, STRANGER)
    assert [t.subject for t in service.list("demo", {}, None, 10, CUSTOMER)[0]] == ["mine"]
    service.comment("demo", mine.id, "我们在查", AGENT)
    service.comment("demo", mine.id, "内部: 物流丢件", AGENT, internal=True)
    assert [c["text"] for c in service.comments("demo", mine.id, CUSTOMER)] == ["我们在查"]
    assert len(service.comments("demo", mine.id, AGENT)) == 2
    with pytest.raises(Forbidden):
        service.comment("demo", mine.id, "x", CUSTOMER, internal=True)
    with pytest.raises(Forbidden):
        service.update("demo", mine.id, {"subject": "hacked"}, CUSTOMER)
    with pytest.raises(Forbidden):
        service.change_status("demo", mine.id, "closed", CUSTOMER)
    assert service.change_status("demo", mine.id, "resolved", CUSTOMER).status == "resolved"
    with pytest.raises(InvalidRequest):
        service.comment("demo", mine.id, "   ", AGENT)


def test_the_escalation_plan_climbs_one_priority_per_level_from_the_deadline():
    service = TicketService(MemoryTicketStore())
    settings = TicketSettings.from_dict({"slaSeconds": {"low": 40, "normal": 30, "high": 20, "urgent": 10},
                                         "escalationGroup": "主管组", "maxLevel": 3})
    service.store.put_ticket_settings("demo", settings.to_dict())
    ticket = service.create("demo", subject="x", by=AGENT, priority="normal")
    plan = escalation_input(ticket, settings)
    assert plan["count"] == 3 and plan["loop"] == {"index": 0} and plan["sk"] == "TICKET"
    assert [s["priority"] for s in plan["steps"]] == ["high", "urgent", "urgent"]
    assert [s["level"] for s in plan["steps"]] == ["1", "2", "3"]  # strings: the machine writes them as N
    at = [_parse(s["at"]) for s in plan["steps"]]
    assert at[0] == _parse(ticket.deadline)
    assert [(b - a).total_seconds() for a, b in zip(at, at[1:])] == [20, 10]  # the new priority's SLA
    assert plan["finalDue"] == plan["steps"][-1]["deadline"] and all(s["group"] == "主管组" for s in plan["steps"])
    escalated = replace(ticket, escalation_level=3)
    assert escalation_input(escalated, settings)["count"] == 0  # at the top: only the final alert is left


def test_runs_start_on_a_new_deadline_and_stop_when_the_ticket_is_done():
    service = TicketService(MemoryTicketStore())
    ticket = service.create("demo", subject="x", by=AGENT)
    assert escalation_plan(None, ticket) == (None, execution_name(ticket))
    moved = replace(ticket, deadline="2030-01-01T00:00:00.000Z")
    assert escalation_plan(ticket, moved) == (execution_name(ticket), execution_name(moved))
    assert escalation_plan(ticket, replace(ticket, subject="y")) == (None, None)
    assert escalation_plan(ticket, replace(ticket, status="resolved")) == (execution_name(ticket), None)
    assert escalation_plan(replace(ticket, status="closed"), moved) == (None, execution_name(moved))
    # the machine's own step (level up, new deadline) is not a new run
    assert escalation_plan(ticket, replace(moved, escalation_level=1)) == (None, None)
    assert escalation_plan(ticket, None) == (execution_name(ticket), None)
    assert len(execution_name(replace(ticket, id="t" * 200))) <= 80


def test_the_state_machine_only_uses_direct_integrations_and_every_next_exists():
    definition = escalation.definition()
    states = definition["States"]
    assert definition["StartAt"] in states
    for name, state in states.items():
        for target in [state.get("Next"), state.get("Default"), *(c.get("Next") for c in state.get("Choices", [])),
                       *(c["Next"] for c in state.get("Catch", []))]:
            assert target is None or target in states, (name, target)
        if state["Type"] == "Task":
            assert state["Resource"].split(":::")[1].split(":")[0] in ("dynamodb", "events", "sns"), name
            assert state.get("Retry"), name  # every task retries transient faults
    assert "lambda" not in escalation.definition_json()
    filled = escalation.definition_json({escalation.TABLE: "t", escalation.TOPIC: "arn:topic", escalation.BUS: "b"})
    assert "${" not in filled
