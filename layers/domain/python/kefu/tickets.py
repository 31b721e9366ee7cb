"""Tickets: what a chat cannot finish, kept until it is done.

A ticket has a priority, a status, an owner (group and assignee) and an SLA deadline; every
change is an event in its history, written in the same conditional update as the change (the
`version` attribute makes concurrent writers fail instead of overwrite). Escalation is not
done here: a new deadline starts a Step Functions execution (kefu.escalation) from the tickets
stream, and that machine writes its own escalation events.

Retention (kefu.retention): an open or pending ticket never expires; resolving or closing it sets its TTL
(`expiresAt`) to the workspace's retention from that moment, reopening it removes the TTL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from math import ceil
from typing import Literal, Protocol

from . import retention
from .errors import Conflict, Forbidden, InvalidRequest, NotFound
from .models import Conversation, Principal, new_id, now_iso, parse_iso, to_iso
from .ports import StateConflict

Priority = Literal["low", "normal", "high", "urgent"]
TicketStatus = Literal["open", "pending", "resolved", "closed"]
Source = Literal["rest", "agent", "conversation", "offline_form", "channel"]
PRIORITIES: tuple[str, ...] = ("low", "normal", "high", "urgent")
STATUSES: tuple[str, ...] = ("open", "pending", "resolved", "closed")
ACTIVE: tuple[str, ...] = ("open", "pending")  # the SLA clock runs

# from -> the statuses it may move to; a move back to open from resolved or closed is a reopen and
# needs a reason
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("pending", "resolved", "closed"),
    "pending": ("open", "resolved", "closed"),
    "resolved": ("open", "closed"),
    "closed": ("open",),
}
REOPEN_FROM = ("resolved", "closed")

DEFAULT_SLA_S = {"urgent": 4 * 3600, "high": 24 * 3600, "normal": 72 * 3600, "low": 120 * 3600}
MAX_SUBJECT = 200
MAX_DESCRIPTION = 10_000
MAX_COMMENT = 10_000
MAX_HISTORY = 500  # events kept on the ticket item (400 KB item limit); older ones are summarised


_parse, _iso = parse_iso, to_iso  # the stored form of instants (kefu.models)


def _whole_second(moment: datetime) -> datetime:
    """Deadlines fall on whole seconds: Step Functions waits to the second (and moto truncates)."""
    return datetime.fromtimestamp(ceil(moment.timestamp()), timezone.utc)


@dataclass(frozen=True)
class TicketSettings:
    """Per workspace: SLA per priority (seconds), where escalations go and how high they climb."""

    sla_s: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_SLA_S))
    escalation_group: str = "escalations"
    max_level: int = 3

    @classmethod
    def from_dict(cls, data: dict | None) -> TicketSettings:
        data = {} if data is None else data
        if not isinstance(data, dict):
            raise InvalidRequest("ticket settings must be an object")
        unknown = set(data) - {"slaSeconds", "escalationGroup", "maxLevel"}
        if unknown:
            raise InvalidRequest(f"unknown ticket settings: {', '.join(sorted(unknown))}")
        sla = dict(DEFAULT_SLA_S)
        given = data.get("slaSeconds", {})
        if not isinstance(given, dict):
            raise InvalidRequest("slaSeconds must map priorities to seconds")
        for priority, seconds in given.items():
            if priority not in PRIORITIES:
                raise InvalidRequest(f"slaSeconds: unknown priority {priority!r} (one of {', '.join(PRIORITIES)})")
            if isinstance(seconds, bool) or not isinstance(seconds, int) or not 1 <= seconds <= 365 * 86400:
                raise InvalidRequest(f"slaSeconds.{priority}: whole seconds between 1 and a year")
            sla[priority] = seconds
        group = data.get("escalationGroup", "escalations")
        if not isinstance(group, str) or not 1 <= len(group) <= 64:
            raise InvalidRequest("escalationGroup: a group name of 1 to 64 characters")
        level = data.get("maxLevel", 3)
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 10:
            raise InvalidRequest("maxLevel must be between 1 and 10")
        return cls(sla, group, level)

    def to_dict(self) -> dict:
        return {"slaSeconds": dict(self.sla_s), "escalationGroup": self.escalation_group, "maxLevel": self.max_level}

    def deadline(self, priority: str, start: datetime) -> datetime:
        return _whole_second(start + timedelta(seconds=self.sla_s[priority]))


@dataclass(frozen=True)
class Ticket:
    workspace: str
    id: str
    subject: str
    customer_id: str | None = None
    customer_name: str = ""
    description: str = ""
    priority: str = "normal"
    status: str = "open"
    group: str | None = None
    assignee_id: str | None = None
    assignee_name: str | None = None
    deadline: str | None = None
    escalation_level: int = 0
    conversations: tuple[str, ...] = ()
    source: str = "rest"
    contact: str | None = None
    created_at: str = field(default_factory=now_iso)
    updated_at: str | None = None
    created_by: dict | None = None
    history: tuple[dict, ...] = ()
    alert: dict | None = None
    version: int = 1
    expires_at: int | None = None  # the TTL (epoch seconds) once resolved or closed (kefu.retention); None while active

    def public(self) -> dict:
        out = {
            "ticketId": self.id, "workspace": self.workspace, "subject": self.subject,
            "description": self.description, "priority": self.priority, "status": self.status,
            "customer": {"id": self.customer_id, "name": self.customer_name} if self.customer_id else None,
            "contact": self.contact, "groupId": self.group,
            "assignee": {"id": self.assignee_id, "name": self.assignee_name} if self.assignee_id else None,
            "deadline": self.deadline, "escalationLevel": self.escalation_level,
            "conversations": list(self.conversations), "source": self.source, "createdBy": self.created_by,
            "createdAt": self.created_at, "updatedAt": self.updated_at or self.created_at,
            "history": list(self.history), "version": self.version,
        }
        if self.alert:
            out["alert"] = self.alert
        return out

    @property
    def overdue(self) -> bool:
        return self.status in ACTIVE and self.deadline is not None and _parse(self.deadline) <= datetime.now(timezone.utc)


def escalation_input(ticket: Ticket, settings: TicketSettings) -> dict:
    """The execution input of the escalation machine: one step per level still to come. Each step
    falls due at the previous deadline, moves the ticket one priority up (urgent stays urgent) to
    the escalation group, and sets the next deadline by the new priority's SLA."""
    steps = []
    due = _parse(ticket.deadline)
    priority = ticket.priority
    for level in range(ticket.escalation_level + 1, settings.max_level + 1):
        priority = PRIORITIES[min(PRIORITIES.index(priority) + 1, len(PRIORITIES) - 1)]
        next_due = settings.deadline(priority, due)
        steps.append({"level": str(level), "at": _iso(due), "priority": priority,
                      "group": settings.escalation_group, "deadline": _iso(next_due)})
        due = next_due
    return {
        "workspace": ticket.workspace, "ticketId": ticket.id, "pk": ticket_pk(ticket.workspace, ticket.id),
        "sk": TICKET_SK, "steps": steps, "count": len(steps), "loop": {"index": 0}, "finalDue": _iso(due),
    }


def execution_name(ticket: Ticket) -> str:
    """Deterministic per (ticket, deadline): a redelivered stream record starts nothing twice, and
    the execution of a deadline can be stopped without having stored its ARN."""
    return f"{ticket.id}-{int(_parse(ticket.deadline).timestamp())}"[:80]


def escalation_plan(old: Ticket | None, new: Ticket | None) -> tuple[str | None, str | None]:
    """What a change of a ticket (stream images) means for its escalation run: (the execution to
    stop, the execution to start), by deterministic name. A new deadline on an active ticket starts
    a run; leaving the active statuses or a new deadline stops the previous one. The machine's own
    escalations (the level rises) move the deadline too, but they are its run's next step."""
    was = old is not None and old.status in ACTIVE and old.deadline
    now = new is not None and new.status in ACTIVE and new.deadline
    if old is not None and new is not None and new.escalation_level > old.escalation_level:
        return None, None
    if was and now and old.deadline == new.deadline:
        return None, None
    return (execution_name(old) if was else None), (execution_name(new) if now else None)


def ticket_pk(workspace: str, ticket_id: str) -> str:
    return f"{workspace}#T#{ticket_id}"


TICKET_SK = "TICKET"


class TicketStore(Protocol):
    def create_ticket(self, ticket: Ticket) -> None: ...
    def get_ticket(self, workspace: str, ticket_id: str) -> Ticket | None: ...
    def update_ticket(self, ticket: Ticket, changes: dict, event: dict, *, expect_status: str | None = None) -> Ticket:
        """Apply `changes` (domain field names; None removes), append `event`, bump the version —
        only if the stored version is `ticket.version` (and the status `expect_status`). Raises
        StateConflict otherwise."""
    def add_comment(self, ticket: Ticket, comment: dict, event: dict) -> Ticket: ...
    def comments(self, workspace: str, ticket_id: str) -> list[dict]: ...
    def list_tickets(self, workspace: str, filters: dict, cursor: str | None, limit: int) -> tuple[list[Ticket], str | None]: ...
    def ticket_settings(self, workspace: str) -> dict: ...
    def put_ticket_settings(self, workspace: str, settings: dict) -> None: ...


def _who(by: Principal | None, source: str) -> dict:
    if by is None:
        return {"role": "system", "id": source, "name": ""}
    return {"role": by.role, "id": by.id, "name": by.name}


class TicketService:
    def __init__(self, store: TicketStore, conversations=None, agents=None,
                 retention_days: Callable[[str], int | None] | None = None):
        self.store = store
        self.conversations = conversations  # Store: the conversation a ticket is created from
        self.agents = agents  # Store: assignees are agents of the workspace
        # workspace -> its retention in days (kefu.privacy), read when a ticket is resolved or closed; None: no TTL
        self.retention_days = retention_days

    def settings(self, workspace: str) -> TicketSettings:
        return TicketSettings.from_dict(self.store.ticket_settings(workspace))

    # ------------------------------------------------------------ create

    def create(self, workspace: str, *, subject: str, by: Principal | None, source: Source = "rest",
               description: str = "", priority: str = "normal", customer_id: str | None = None,
               customer_name: str = "", conversation_id: str | None = None, group: str | None = None,
               assignee_id: str | None = None, contact: str | None = None) -> Ticket:
        subject = " ".join((subject or "").split())
        if not subject:
            raise InvalidRequest("subject: say in a few words what the ticket is about")
        if len(subject) > MAX_SUBJECT or len(description) > MAX_DESCRIPTION:
            raise InvalidRequest(f"subject is at most {MAX_SUBJECT} characters, description {MAX_DESCRIPTION}")
        if priority not in PRIORITIES:
            raise InvalidRequest(f"priority: one of {', '.join(PRIORITIES)}")
        conversations: tuple[str, ...] = ()
        if conversation_id:
            conversation = self._conversation(workspace, conversation_id, by)
            conversations = (conversation.id,)
            customer_id = customer_id or conversation.customer_id
            customer_name = customer_name or conversation.customer_name
        assignee_name = self._assignee(workspace, assignee_id) if assignee_id else None
        settings = self.settings(workspace)
        created = datetime.now(timezone.utc)
        author = _who(by, source)
        ticket = Ticket(
            workspace=workspace, id=new_id("t"), subject=subject, description=description, priority=priority,
            customer_id=customer_id, customer_name=customer_name, group=group, assignee_id=assignee_id,
            assignee_name=assignee_name, deadline=_iso(settings.deadline(priority, created)),
            conversations=conversations, source=source, contact=contact, created_at=_iso(created),
            created_by=author,
        )
        ticket = replace(ticket, history=({"type": "created", "at": ticket.created_at, "by": author["id"],
                                           "byRole": author["role"], "source": source, "priority": priority,
                                           "deadline": ticket.deadline},))
        self.store.create_ticket(ticket)
        return ticket

    def from_offline_form(self, form: dict) -> Ticket:
        question = form.get("question") or ""
        return self.create(
            form["workspace"], subject=_subject_of(question), description=question, by=None,
            source="offline_form", customer_id=form.get("customerId"), customer_name=form.get("name") or "",
            conversation_id=form.get("conversationId"), contact=form.get("contact"),
        )

    def from_unresolved_close(self, conversation: Conversation, by: Principal | None, last_text: str = "") -> Ticket:
        who = conversation.customer_name or conversation.customer_id
        return self.create(
            conversation.workspace, subject=f"Unresolved conversation with {who}"[:MAX_SUBJECT],
            description=last_text[:MAX_DESCRIPTION], by=by, source="conversation",
            conversation_id=conversation.id, group=conversation.group,
        )

    # ------------------------------------------------------------ read

    def get(self, workspace: str, ticket_id: str, by: Principal | None = None) -> Ticket:
        ticket = self.store.get_ticket(workspace, ticket_id)
        if ticket is None or not self._may_see(ticket, by):
            raise NotFound("no such ticket")
        return ticket

    def list(self, workspace: str, filters: dict, cursor: str | None, limit: int, by: Principal | None = None):
        if by is not None and by.role == "customer":
            filters = {**filters, "customerId": by.id}
        return self.store.list_tickets(workspace, filters, cursor, limit)

    # ------------------------------------------------------------ change

    def update(self, workspace: str, ticket_id: str, fields: dict, by: Principal | None,
               expected_version: int | None = None) -> Ticket:
        """Subject, description, priority, group, assignee. A new priority restarts the SLA clock."""
        ticket = self._current(workspace, ticket_id, by, expected_version)
        self._staff_only(by)
        if ticket.status == "closed":
            raise Conflict("the ticket is closed: reopen it first")
        changes: dict = {}
        for name in ("subject", "description", "priority", "group", "assignee_id"):
            if name in fields and fields[name] != getattr(ticket, name):
                changes[name] = fields[name]
        if not changes:
            return ticket
        if "subject" in changes:
            changes["subject"] = " ".join((changes["subject"] or "").split())
            if not changes["subject"] or len(changes["subject"]) > MAX_SUBJECT:
                raise InvalidRequest(f"subject: 1 to {MAX_SUBJECT} characters")
        if len(changes.get("description") or "") > MAX_DESCRIPTION:
            raise InvalidRequest(f"description is at most {MAX_DESCRIPTION} characters")
        if "priority" in changes:
            if changes["priority"] not in PRIORITIES:
                raise InvalidRequest(f"priority: one of {', '.join(PRIORITIES)}")
            if ticket.status in ACTIVE:
                deadline = self.settings(workspace).deadline(changes["priority"], datetime.now(timezone.utc))
                changes["deadline"] = _iso(deadline)
        if "assignee_id" in changes:
            changes["assignee_name"] = self._assignee(workspace, changes["assignee_id"]) if changes["assignee_id"] else None
        event = {"type": "updated", "at": now_iso(), **_actor(by),
                 "changes": {_public_name(k): v for k, v in changes.items() if k != "description"}}
        if "description" in changes:
            event["changes"]["description"] = "(changed)"
        return self._write(ticket, changes, event)

    def change_status(self, workspace: str, ticket_id: str, status: str, by: Principal | None,
                      reason: str = "", expected_version: int | None = None) -> Ticket:
        ticket = self._current(workspace, ticket_id, by, expected_version)
        if status not in STATUSES:
            raise InvalidRequest(f"status: one of {', '.join(STATUSES)}")
        if by is not None and by.role == "customer" and status not in ("resolved", "open"):
            raise Forbidden("customers may mark their ticket resolved or reopen it")
        if status == ticket.status:
            raise Conflict(f"the ticket is already {status}")
        if status not in TRANSITIONS[ticket.status]:
            raise Conflict(f"a {ticket.status} ticket cannot become {status}")
        reason = " ".join((reason or "").split())
        if ticket.status in REOPEN_FROM and status == "open" and not reason:
            raise InvalidRequest("reopening a ticket needs a reason")
        if len(reason) > 1000:
            raise InvalidRequest("reason is at most 1000 characters")
        changes: dict = {"status": status}
        moment = datetime.now(timezone.utc)
        if status == "open" and ticket.status in REOPEN_FROM:
            # a reopened ticket gets a fresh SLA clock (and with it a new escalation run)
            changes["deadline"] = _iso(self.settings(workspace).deadline(ticket.priority, moment))
        # retention: resolved or closed, the ticket expires the workspace's retention from now; active, never
        days = self.retention_days(workspace) if self.retention_days and status in retention.DONE else None
        expires = retention.ticket_expires_at(status, moment, days)
        if expires is not None or ticket.expires_at is not None:
            changes["expires_at"] = expires  # None removes it (reopened)
        event = {"type": "status", "at": _iso(moment), **_actor(by), "from": ticket.status, "to": status}
        if reason:
            event["reason"] = reason
        return self._write(ticket, changes, event, expect_status=ticket.status)

    def comment(self, workspace: str, ticket_id: str, text: str, by: Principal | None,
                internal: bool = False) -> dict:
        ticket = self.get(workspace, ticket_id, by)
        text = (text or "").strip()
        if not text:
            raise InvalidRequest("text: the comment is empty")
        if len(text) > MAX_COMMENT:
            raise InvalidRequest(f"a comment is at most {MAX_COMMENT} characters")
        if internal and by is not None and by.role == "customer":
            raise Forbidden("internal notes are for agents")
        comment = {"commentId": new_id("cm"), "ticketId": ticket.id, "author": _who(by, "integrator"),
                   "text": text, "internal": internal, "createdAt": now_iso()}
        event = {"type": "commented", "at": comment["createdAt"], **_actor(by), "commentId": comment["commentId"],
                 "internal": internal}
        self.store.add_comment(ticket, comment, event)
        return comment

    def comments(self, workspace: str, ticket_id: str, by: Principal | None) -> list[dict]:
        self.get(workspace, ticket_id, by)
        items = self.store.comments(workspace, ticket_id)
        if by is not None and by.role == "customer":
            items = [c for c in items if not c.get("internal")]
        return items

    def link_conversation(self, workspace: str, ticket_id: str, conversation_id: str, by: Principal | None) -> Ticket:
        ticket = self._current(workspace, ticket_id, by, None)
        self._staff_only(by)
        conversation = self._conversation(workspace, conversation_id, by)
        if conversation.id in ticket.conversations:
            return ticket
        event = {"type": "linked", "at": now_iso(), **_actor(by), "conversationId": conversation.id}
        return self._write(ticket, {"conversations": (*ticket.conversations, conversation.id)}, event)

    # ------------------------------------------------------------ internals

    def _write(self, ticket: Ticket, changes: dict, event: dict, **condition) -> Ticket:
        try:
            return self.store.update_ticket(ticket, changes, event, **condition)
        except StateConflict:
            current = self.store.get_ticket(ticket.workspace, ticket.id)
            raise Conflict("the ticket changed meanwhile: reload it and try again",
                           details={"version": current.version if current else None}) from None

    def _current(self, workspace: str, ticket_id: str, by: Principal | None, expected_version: int | None) -> Ticket:
        ticket = self.get(workspace, ticket_id, by)
        if expected_version is not None and expected_version != ticket.version:
            raise Conflict(f"the ticket changed meanwhile (version {ticket.version}, you sent {expected_version})",
                           details={"version": ticket.version})
        return ticket

    @staticmethod
    def _may_see(ticket: Ticket, by: Principal | None) -> bool:
        if by is None:
            return True  # integrators (an API key of this workspace) and the system
        if by.workspace != ticket.workspace:
            return False
        return by.role == "agent" or by.id == ticket.customer_id

    @staticmethod
    def _staff_only(by: Principal | None) -> None:
        if by is not None and by.role == "customer":
            raise Forbidden("only agents change tickets")

    def _conversation(self, workspace: str, conversation_id: str, by: Principal | None) -> Conversation:
        conversation = self.conversations.get_conversation(workspace, conversation_id) if self.conversations else None
        if conversation is None:
            raise NotFound("no such conversation")
        if by is not None and not (conversation.is_participant(by) or by.is_supervisor):
            raise NotFound("no such conversation")
        return conversation

    def _assignee(self, workspace: str, agent_id: str) -> str:
        agent = self.agents.get_agent(workspace, agent_id) if self.agents else None
        if agent is None:
            raise InvalidRequest(f"assignee: no agent {agent_id!r} in this workspace")
        return agent.name


def _actor(by: Principal | None) -> dict:
    return {"by": by.id if by else "integrator", "byRole": by.role if by else "integrator"}


def _public_name(name: str) -> str:
    return {"group": "groupId", "assignee_id": "assigneeId", "assignee_name": "assigneeName"}.get(name, name)


def _subject_of(text: str) -> str:
    line = " ".join(text.split())
    return (line[:60] + "…") if len(line) > 60 else (line or "Offline message")
