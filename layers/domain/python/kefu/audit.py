"""The audit log of sensitive actions (issue 8): who, what, when, from where. Append-only.

One call records an entry:

    from kefu import audit
    audit.record("ws-1", "customer.export", actor=audit.agent("adm"), target="cust-42",
                 source=audit.Source(ip="203.0.113.9", user_agent="Mozilla/5.0 ..."), details={"items": 12})

(in functions/api/handler.py, `_audit(workspace, action, target=..., **details)` fills in the caller and the
request's source address and user agent). An entry holds ids, never message text or other personal data:
`details` takes short scalar values (and lists of them) only, and every string is passed through
kefu.pii.mask, so a phone number or e-mail that slips into an id is masked before it is stored.

Storage (adapters/audit_store.py): the Audit table, written only with a conditional PutItem
(attribute_not_exists: an entry is never overwritten); the functions that record have PutItem on it and
nothing else, the api function's admins read it with Query only; no code path updates or deletes an entry.
Entries expire after RETENTION_DAYS (the table's TTL).

Actions (ACTIONS lists them; a new kind of action is added there): agent.create / agent.update /
agent.role_change, api_key.issue / api_key.revoke, webhook.subscribe / webhook.update / webhook.unsubscribe /
webhook.rotate_secret, experiment.create / experiment.start / experiment.stop / experiment.roll_out,
settings.routing / settings.bot / settings.survey / settings.proactive / settings.quick_replies / settings.tickets /
settings.channel, kb.import / kb.delete, customer.history_view, customer.export, customer.delete,
data.retention, pii.reveal (a masked message's original shown, or refused), step_up.enrol / step_up.verify / step_up.failure / step_up.locked / step_up.sso.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import pii

RETENTION_DAYS = 400
MAX_DETAIL_CHARS = 200
MAX_DETAILS = 20
ACTIONS = frozenset({
    "agent.create", "agent.update", "agent.role_change", "agent.delete",
    "api_key.issue", "api_key.revoke",
    "webhook.subscribe", "webhook.update", "webhook.unsubscribe", "webhook.rotate_secret",
    "experiment.create", "experiment.start", "experiment.stop", "experiment.roll_out",
    "settings.routing", "settings.bot", "settings.survey", "settings.proactive", "settings.quick_replies",
    "settings.tickets", "settings.channel", "settings.retention",
    "kb.import", "kb.delete",
    "customer.history_view", "customer.export", "customer.delete", "data.retention", "pii.reveal",
    "step_up.enrol", "step_up.verify", "step_up.failure", "step_up.locked", "step_up.sso",
})
OUTCOMES = ("ok", "refused")


@dataclass(frozen=True)
class Actor:
    type: str  # "agent" (a console user), "integration" (an API key), "system"
    id: str
    role: str | None = None  # the agent's directory role when they acted

    def key(self) -> str:
        return f"{self.type}:{self.id}"


def agent(agent_id: str, role: str | None = None) -> Actor:
    return Actor("agent", agent_id, role)


def integration(key_id: str) -> Actor:
    return Actor("integration", key_id)


@dataclass(frozen=True)
class Source:
    ip: str | None = None
    user_agent: str | None = None


@dataclass(frozen=True)
class Entry:
    workspace: str
    action: str
    actor: Actor
    at: str  # ISO 8601 UTC with milliseconds (sorts as time)
    id: str
    target: str | None = None  # the id acted on (agent, key, subscription, experiment, customer...)
    outcome: str = "ok"
    source: Source = field(default_factory=Source)
    details: dict = field(default_factory=dict)

    def public(self) -> dict:
        return {"entryId": self.id, "at": self.at, "action": self.action, "outcome": self.outcome,
                "actor": {"type": self.actor.type, "id": self.actor.id, "role": self.actor.role},
                "target": self.target, "sourceIp": self.source.ip, "userAgent": self.source.user_agent,
                "details": dict(self.details)}


def _clean(value):
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, str):
        return pii.mask(value)[:MAX_DETAIL_CHARS]
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(v) for v in list(value)[:MAX_DETAILS] if v is None or isinstance(v, (bool, int, float, str))]
    raise TypeError(f"audit details take scalars and lists of them, not {type(value).__name__}")


def entry(workspace: str, action: str, *, actor: Actor, target: str | None = None, outcome: str = "ok",
          source: Source | None = None, details: dict | None = None, now: datetime | None = None) -> Entry:
    """A new entry (not stored): checks the action and cleans what it holds."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}: add it to kefu.audit.ACTIONS")
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome: one of {OUTCOMES}")
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    at = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    source = source or Source()
    return Entry(
        workspace=workspace, action=action, actor=Actor(actor.type, _clean(actor.id), actor.role), at=at,
        id=secrets.token_hex(8), target=_clean(target) if target is not None else None, outcome=outcome,
        source=Source(_clean(source.ip)[:64] if source.ip else None,
                      _clean(source.user_agent) if source.user_agent else None),
        details={str(k)[:40]: _clean(v) for k, v in list((details or {}).items())[:MAX_DETAILS]},
    )


def record(workspace: str, action: str, *, actor: Actor, target: str | None = None, outcome: str = "ok",
           source: Source | None = None, details: dict | None = None, store=None) -> Entry:
    """Append an entry to the audit log (the Audit table, unless `store` is given: anything with append(entry)).
    Raises if it cannot be stored: a sensitive action whose audit entry failed must not report success."""
    made = entry(workspace, action, actor=actor, target=target, outcome=outcome, source=source, details=details)
    if store is None:
        from . import wiring

        store = wiring.audit_store()
    store.append(made)
    return made


def parse_time(value: str) -> str:
    """A `from` / `to` bound (a date 2026-11-21 or an ISO instant) as the entries' sortable form."""
    text = value.strip()
    if len(text) == 10:
        datetime.strptime(text, "%Y-%m-%d")
        return text
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def expires_at(at: str) -> int:
    """The entry's TTL (Unix seconds): RETENTION_DAYS after it was made."""
    moment = datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return int(moment.timestamp()) + RETENTION_DAYS * 86400
