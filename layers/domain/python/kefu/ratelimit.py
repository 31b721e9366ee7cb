"""Rate limits (issue 8, abuse): messages per connection and per person, connections per person and per
source address at $connect.

Fixed windows counted in DynamoDB: one conditional UpdateItem per check adds 1 to every counter the check
involves, only if each is still below its cap, so a refused attempt counts nothing and a resend after
`retryAfter` goes through. The per-connection window is nested in the per-person one (one item per person
and person window, one attribute per connection and connection window), so a message costs one round trip
whatever the number of limits. A fixed window lets a burst of up to twice a limit straddle a boundary; that
is the price of one unconditional-read-free write, and fine for abuse control.

Pure logic: the counters are a port (Counters); adapters/rate_counters.py keeps them in DynamoDB,
MemoryCounters here keeps them in memory (unit tests). Limits come from the environment
(schema.ENV_RATE_LIMITS), over the defaults below.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Callable, Protocol

from . import schema
from .errors import RateLimited

if TYPE_CHECKING:
    from .models import Conversation, ConnectionRef, Message, Principal

log = logging.getLogger(__name__)

# counters stay this long after their window ends (DynamoDB's TTL deletes them later still; expired ones
# are never read again: the window is part of the key)
GRACE_S = 60


@dataclass(frozen=True)
class Limit:
    """At most `count` events per fixed window of `window_s` seconds."""

    count: int
    window_s: int

    def __post_init__(self) -> None:
        if not (isinstance(self.count, int) and 1 <= self.count <= 1_000_000):
            raise ValueError(f"a limit's count is 1..1000000, not {self.count!r}")
        if not (isinstance(self.window_s, int) and 1 <= self.window_s <= 86_400):
            raise ValueError(f"a limit's window is 1..86400 s, not {self.window_s!r}")

    @classmethod
    def parse(cls, text: str) -> Limit:
        """"10/10s", "30/60s", "30/1m", "100/1h"."""
        found = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*([smh]?)\s*", text or "")
        if not found:
            raise ValueError(f"a limit looks like \"10/10s\", not {text!r}")
        unit = {"": 1, "s": 1, "m": 60, "h": 3600}[found.group(3)]
        return cls(int(found.group(1)), int(found.group(2)) * unit)

    def __str__(self) -> str:
        return f"{self.count}/{self.window_s}s"


@dataclass(frozen=True)
class Limits:
    """What each kind of caller may do. None switches that limit off.

    Customers are stricter than agents: a person types a line every few seconds, an agent with quick replies
    and several conversations sends more. A connection's limit stops one runaway tab or script; the person's
    limit (across all their connections and conversations) stops the same through many tabs. At $connect, a
    person reconnecting in a loop, and one address minting visitor tokens, are refused.
    """

    customer_connection: Limit | None = Limit(10, 10)  # messages per connection
    customer_person: Limit | None = Limit(30, 60)  # messages per visitor, across their connections
    agent_connection: Limit | None = Limit(30, 10)
    agent_person: Limit | None = Limit(120, 60)
    connect_person: Limit | None = Limit(20, 60)  # new connections per visitor (or agent)
    # new connections per source address and workspace: generous, as offices, campuses and mobile carriers put
    # many people behind one address (carrier-grade NAT)
    connect_source: Limit | None = Limit(300, 60)

    def __post_init__(self) -> None:
        for role in ("customer", "agent"):
            connection, person = self.messages(role)
            if connection and person and person.window_s % connection.window_s:
                raise ValueError(f"{role}.person's window ({person.window_s} s) must be a multiple of "
                                 f"{role}.connection's ({connection.window_s} s)")

    def messages(self, role: str) -> tuple[Limit | None, Limit | None]:
        if role == "agent":
            return self.agent_connection, self.agent_person
        return self.customer_connection, self.customer_person

    @classmethod
    def parse(cls, raw: str | None) -> Limits:
        """The environment's setting: empty (or "default") for the defaults, "off" for none, or a JSON object overriding
        some of them: {"customer.connection": "10/10s", "customer.person": "30/60s", "agent.connection":
        "30/10s", "agent.person": "120/60s", "connect.person": "20/60s", "connect.source": "300/60s"}; a
        value of null or "off" switches that limit off."""
        raw = (raw or "").strip()
        if not raw or raw.lower() == "default":
            return cls()
        if raw.lower() == "off":
            return cls(**{f.name: None for f in fields(cls)})
        try:
            settings = json.loads(raw)
        except ValueError:
            raise ValueError(f"{schema.ENV_RATE_LIMITS} is not JSON") from None
        if not isinstance(settings, dict):
            raise ValueError(f"{schema.ENV_RATE_LIMITS} must be a JSON object")
        known = {f.name for f in fields(cls)}
        changes: dict[str, Limit | None] = {}
        for key, value in settings.items():
            name = str(key).replace(".", "_")
            if name not in known:
                raise ValueError(f"unknown rate limit {key!r} (known: {', '.join(sorted(known))})")
            changes[name] = None if value is None or value == "off" else Limit.parse(str(value))
        return replace(cls(), **changes)


DEFAULT_LIMITS = Limits()
# The local stack's setting (unless KEFU_RATE_LIMITS is set; "default" gives the defaults above): no message
# limits, as its benchmark and tests send faster than any person types (one customer sends 70 messages in a
# few seconds) and count the message path's requests (the limiter adds an UpdateItem); connections are limited
# as on AWS, except that one address (loopback) opens hundreds of them.
LOCAL_STACK_LIMITS = json.dumps({"customer.connection": "off", "customer.person": "off",
                                 "agent.connection": "off", "agent.person": "off", "connect.source": "2000/60s"})
_parsed: dict[str, Limits] = {}


def limits_from_env(environ=None) -> Limits:
    """The limits the environment sets (read on every call: cheap, parsed once per value). A broken setting
    is logged and the defaults apply: a typo must not stop every message."""
    import os

    raw = (environ if environ is not None else os.environ).get(schema.ENV_RATE_LIMITS, "")
    found = _parsed.get(raw)
    if found is None:
        try:
            found = Limits.parse(raw)
        except ValueError as error:
            log.error("rate limits setting refused; using the defaults", extra={"problem": str(error)})
            found = DEFAULT_LIMITS
        _parsed[raw] = found
    return found


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # whole seconds until the window that refused ends (at least 1 when refused)
    scope: str | None = None  # what refused: "connection", "person" or "source"


ALLOWED = Verdict(True)


class Counters(Protocol):
    def hit(self, subject: str, bucket: str, caps: dict[str, int], expires_at: int) -> dict[str, int] | None:
        """Atomically add 1 to each counter named in `caps` on the record (subject, bucket), only if every one
        of them is below its cap. None when counted; otherwise nothing is counted and the counters' current
        values come back (0 for one not there yet). The record may be forgotten after `expires_at`."""


def window_start(now: float, window_s: int) -> int:
    return int(now // window_s) * window_s


def _retry_after(end: int, now: float) -> int:
    return max(1, math.ceil(end - now))


def source_key(workspace: str, address: str) -> str:
    """What a source address is counted under: a digest, never the address (counters are data at rest)."""
    return hashlib.sha256(f"{workspace}|{address}".encode()).hexdigest()[:20]


class RateLimiter:
    """Checks and counts; a check that cannot reach its counters lets the caller through (and logs it): the
    limiter protects the service, it must not become the way it fails."""

    def __init__(self, counters: Counters, limits: Limits | Callable[[], Limits] = limits_from_env,
                 clock: Callable[[], float] = time.time):
        self.counters = counters
        self._limits = limits if callable(limits) else (lambda: limits)
        self.clock = clock

    @property
    def limits(self) -> Limits:
        return self._limits()

    def message(self, who: Principal, connection_id: str) -> Verdict:
        """One message from this connection: counted, or refused with how long to wait."""
        connection, person = self.limits.messages(who.role)
        outer = person or connection
        if outer is None:
            return ALLOWED
        now = self.clock()
        start = window_start(now, outer.window_s)
        caps, ends = {}, {}
        if person is not None:
            caps["n"] = person.count
            ends["n"] = ("person", start + person.window_s)
        if connection is not None:
            slot = window_start(now, connection.window_s)
            name = f"c#{connection_id}#{slot}"
            caps[name] = connection.count
            ends[name] = ("connection", slot + connection.window_s)
        subject = f"{who.workspace}#{who.role}#{who.id}"
        return self._check(subject, f"MSG#{outer.window_s}#{start}", caps, ends, start + outer.window_s, now)

    def connect(self, who: Principal, source_ip: str | None) -> Verdict:
        """One new connection of this person from this address."""
        limits = self.limits
        checks = []
        if limits.connect_person is not None:
            checks.append(("person", f"{who.workspace}#{who.role}#{who.id}", limits.connect_person))
        if limits.connect_source is not None and source_ip:
            checks.append(("source", f"{who.workspace}#src#{source_key(who.workspace, source_ip)}",
                           limits.connect_source))
        now = self.clock()
        for scope, subject, limit in checks:
            start = window_start(now, limit.window_s)
            verdict = self._check(subject, f"CON#{limit.window_s}#{start}", {"n": limit.count},
                                  {"n": (scope, start + limit.window_s)}, start + limit.window_s, now)
            if not verdict.allowed:
                return verdict
        return ALLOWED

    def _check(self, subject: str, bucket: str, caps: dict[str, int], ends: dict[str, tuple[str, int]],
               window_end: int, now: float) -> Verdict:
        try:
            seen = self.counters.hit(subject, bucket, caps, window_end + GRACE_S)
        except Exception:  # noqa: BLE001 - fail open, loudly
            log.warning("rate limit counters unavailable; let through", exc_info=True)
            return ALLOWED
        if seen is None:
            return ALLOWED
        full = [ends[name] for name, cap in caps.items() if seen.get(name, 0) >= cap]
        if not full:  # refused, yet nothing is full: a counter moved between the write and the read
            return Verdict(False, 1, "person" if "n" in caps else "connection")
        scope, end = max(full, key=lambda f: f[1])
        return Verdict(False, _retry_after(end, now), scope)


class MemoryCounters:
    """Counters in memory (unit tests, one process)."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], dict[str, int]] = {}
        self.expiry: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def hit(self, subject: str, bucket: str, caps: dict[str, int], expires_at: int) -> dict[str, int] | None:
        with self._lock:
            record = self.records.setdefault((subject, bucket), {})
            if any(record.get(name, 0) >= cap for name, cap in caps.items()):
                return {name: record.get(name, 0) for name in caps}
            for name in caps:
                record[name] = record.get(name, 0) + 1
            self.expiry[(subject, bucket)] = expires_at
            return None


class GatedStore:
    """The conversation store of one message, whose writes of that message (and of the conversation it may
    open) wait for the limiter's verdict, while the reads before them (the conversation, its fan-out list)
    go ahead: the verdict's round trip overlaps them instead of adding to them.

    Refused: RateLimited, and nothing is written, unless the message was stored already (a resend after a
    lost ack), which gets its original ack as any resend does."""

    def __init__(self, store, verdict: Callable[[], Verdict], client_message_id: str):
        self._store = store
        self._verdict = verdict
        self._cmid = client_message_id

    def __getattr__(self, name):
        return getattr(self._store, name)

    def _refusal(self, verdict: Verdict) -> RateLimited:
        return RateLimited(f"too many messages ({verdict.scope}); resend it with the same clientMessageId in "
                           f"{verdict.retry_after} s", client_message_id=self._cmid,
                           retry_after=verdict.retry_after, scope=verdict.scope)

    def create_conversation(self, conversation: Conversation, connections: list[ConnectionRef]) -> None:
        verdict = self._verdict()
        if not verdict.allowed:
            raise self._refusal(verdict)
        return self._store.create_conversation(conversation, connections)

    def append_message(self, conversation: Conversation, message: Message, sender_key: str) -> None:
        verdict = self._verdict()
        if not verdict.allowed:
            from .ports import DuplicateMessage

            if self._store.find_message(conversation.workspace, conversation.id, sender_key,
                                        message.client_message_id) is not None:
                raise DuplicateMessage()
            raise self._refusal(verdict)
        return self._store.append_message(conversation, message, sender_key)
