"""Retention of tickets and business events (kefu.retention): the TTLs they get from the workspace's retention,
and the ticket service setting, refreshing and removing a ticket's expiry as it is resolved, closed, reopened."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from kefu import retention, schema
from kefu.models import Principal, parse_iso
from kefu.retention import DAY_S, EVENT_HORIZON_S
from kefu.tickets import TicketService

from .fakes import MemoryTicketStore

AGENT = Principal("demo", "agent", "bob", "Bob", agent_role="agent")
CUSTOMER = Principal("demo", "customer", "c1", "张三")
T0 = datetime(2026, 11, 21, 9, 30, 0, 500000, tzinfo=timezone.utc)


def test_expires_at_is_whole_seconds_days_later():
    assert retention.expires_at(T0, 1) == int(T0.timestamp()) + DAY_S
    assert retention.expires_at(1_000.9, 30) == 1_000 + 30 * DAY_S
    for bad in (0, -1, 1.5, True, None, "7"):
        with pytest.raises(ValueError):
            retention.expires_at(T0, bad)


@pytest.mark.parametrize("status", ["open", "pending"])
def test_an_active_ticket_never_expires(status):
    assert retention.ticket_expires_at(status, T0, 1) is None


@pytest.mark.parametrize("status", ["resolved", "closed"])
def test_a_finished_ticket_expires_retention_after_it_finished(status):
    assert retention.ticket_expires_at(status, T0, 1) == int(T0.timestamp()) + DAY_S
    assert retention.ticket_expires_at(status, T0.timestamp(), 365) == int(T0.timestamp()) + 365 * DAY_S
    assert retention.ticket_expires_at(status, T0, None) is None  # the retention is not known: kept


def test_business_events_follow_the_retention_but_never_exceed_their_old_horizon():
    stored = int(T0.timestamp())
    assert retention.event_expires_at(T0, 1) == stored + DAY_S
    assert retention.event_expires_at(T0, 365) == stored + 365 * DAY_S
    assert retention.event_expires_at(T0, 400) == stored + EVENT_HORIZON_S
    assert retention.event_expires_at(T0, 1830) == stored + EVENT_HORIZON_S  # five years: still 400 days
    assert retention.event_expires_at(T0, None) == stored + EVENT_HORIZON_S
    assert EVENT_HORIZON_S == 400 * DAY_S


def test_the_tickets_table_has_a_ttl_on_expires_at_and_ticket_events_may_write_it():
    assert schema.TICKETS.ttl_attribute == "expiresAt"
    assert schema.METRICS.ttl_attribute == "expiresAt"  # business events
    assert "Tickets" in schema.FUNCTIONS_BY_NAME["ticket_events"].writes  # comments follow their ticket


class Days:
    def __init__(self, days: int | None):
        self.days, self.asked = days, []

    def __call__(self, workspace: str):
        self.asked.append(workspace)
        return self.days


def _service(days: int | None = 1):
    lookup = Days(days)
    return TicketService(MemoryTicketStore(), retention_days=lookup), lookup


def _status_at(ticket, to: str) -> datetime:
    return parse_iso(next(e for e in reversed(ticket.history) if e.get("type") == "status" and e["to"] == to)["at"])


def test_a_ticket_open_longer_than_the_retention_does_not_expire_until_it_is_closed():
    service, lookup = _service(1)
    ticket = service.create("demo", subject="发票没收到", by=AGENT)
    # opened 30 days ago, retention 1 day: still open, still kept
    old = replace(ticket, created_at="2020-01-01T00:00:00.000Z")
    service.store.tickets[("demo", ticket.id)] = old
    assert service.get("demo", ticket.id).expires_at is None
    pending = service.change_status("demo", ticket.id, "pending", AGENT)
    assert pending.expires_at is None and lookup.asked == []  # active: the retention is not even read
    closed = service.change_status("demo", ticket.id, "closed", AGENT)
    closed_at = _status_at(closed, "closed")
    assert closed.expires_at == int(closed_at.timestamp()) + DAY_S  # from the close, not from the creation
    assert lookup.asked == ["demo"]


def test_resolving_then_closing_refreshes_the_expiry_and_reopening_removes_it():
    service, lookup = _service(30)
    ticket = service.create("demo", subject="退款", by=AGENT, customer_id="c1")
    resolved = service.change_status("demo", ticket.id, "resolved", CUSTOMER)
    assert resolved.expires_at == int(_status_at(resolved, "resolved").timestamp()) + 30 * DAY_S
    # a comment or an edit does not move the clock
    service.comment("demo", ticket.id, "谢谢", CUSTOMER)
    edited = service.update("demo", ticket.id, {"priority": "low"}, AGENT)
    assert edited.expires_at == resolved.expires_at
    # the workspace shortened its retention meanwhile: the close uses the retention of that moment
    lookup.days = 7
    closed = service.change_status("demo", ticket.id, "closed", AGENT)
    assert closed.expires_at == int(_status_at(closed, "closed").timestamp()) + 7 * DAY_S
    assert closed.expires_at >= int(_status_at(closed, "closed").timestamp())
    reopened = service.change_status("demo", ticket.id, "open", CUSTOMER, reason="还是没收到")
    assert reopened.expires_at is None
    again = service.change_status("demo", ticket.id, "resolved", AGENT)
    assert again.expires_at == int(_status_at(again, "resolved").timestamp()) + 7 * DAY_S


def test_without_a_retention_lookup_tickets_keep_no_expiry():
    service = TicketService(MemoryTicketStore())
    ticket = service.create("demo", subject="x", by=AGENT)
    assert service.change_status("demo", ticket.id, "closed", AGENT).expires_at is None


def test_the_expiry_is_about_now():
    service, _ = _service(1)
    ticket = service.create("demo", subject="x", by=AGENT)
    before = datetime.now(timezone.utc)
    closed = service.change_status("demo", ticket.id, "closed", AGENT)
    after = datetime.now(timezone.utc)
    expires = datetime.fromtimestamp(closed.expires_at, timezone.utc)
    assert before + timedelta(days=1) - timedelta(seconds=1) <= expires <= after + timedelta(days=1)
