"""When stored items expire: the DynamoDB TTL (`expiresAt`, epoch seconds) that a workspace's retention
(kefu.privacy.PrivacySettings.retention_days, GET / PUT /workspaces/{ws}/privacy) gives tickets and business
events. Conversations compute theirs in the conversation store (written + retention).

- Tickets are kept while someone is working on them: an open or pending ticket has no expiry, however long it
  stays open (an escalation may still run on it). When it is resolved or closed, it expires `retention_days`
  after that moment; a reopened ticket loses its expiry, and resolving or closing it again starts the clock
  again (so a ticket resolved, then closed a week later, expires retention days after the close). Its comments
  carry the ticket's expiry (adapters/ticket_store.py; the ticket_events function keeps them in step).
- Business events (order_placed, payment_succeeded, POST /events) expire `retention_days` after they are
  stored, and never later than EVENT_HORIZON_S (400 days, the horizon they had before retention applied to them).

Plain Python, no AWS.
"""

from __future__ import annotations

from datetime import datetime

DAY_S = 86400
EVENT_HORIZON_S = 400 * DAY_S  # business events were kept this long before they followed the workspace's retention
DONE = ("resolved", "closed")  # a ticket in these statuses is finished: its retention clock runs


def expires_at(moment: float | datetime, retention_days: int) -> int:
    """The TTL of something `retention_days` after `moment` (epoch seconds or an aware datetime)."""
    seconds = moment.timestamp() if isinstance(moment, datetime) else float(moment)
    if isinstance(retention_days, bool) or not isinstance(retention_days, int) or retention_days < 1:
        raise ValueError(f"retention_days: a whole number of days, at least 1, not {retention_days!r}")
    return int(seconds) + retention_days * DAY_S


def ticket_expires_at(status: str, changed_at: float | datetime, retention_days: int | None) -> int | None:
    """The TTL of a ticket that moved to `status` at `changed_at`: None while it is open or pending (or when the
    workspace's retention is unknown), `retention_days` after the change once it is resolved or closed."""
    if status not in DONE or retention_days is None:
        return None
    return expires_at(changed_at, retention_days)


def event_expires_at(stored_at: float | datetime, retention_days: int | None) -> int:
    """The TTL of a business event stored at `stored_at`: the workspace's retention, at most EVENT_HORIZON_S."""
    seconds = stored_at.timestamp() if isinstance(stored_at, datetime) else float(stored_at)
    horizon = int(seconds) + EVENT_HORIZON_S
    if retention_days is None:
        return horizon
    return min(expires_at(seconds, retention_days), horizon)
