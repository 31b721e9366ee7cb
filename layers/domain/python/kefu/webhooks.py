"""Outgoing webhooks: signed JSON deliveries of domain events to integrators' URLs.

Pure parts (subscriptions and their validation, signing, the events a stream change means, the
envelope) and the delivery machinery (Dispatcher, HttpSender). No AWS here: the subscriptions and
the delivery log live in adapters/webhook_store.py, the stream consumer is a function.

Events come from the Conversations and Tickets streams as plain images (dicts of attribute name to
value, as Powertools deserialises them). Their ids are derived from the item they come from, so a
redelivered stream record makes the same event again and integrators can drop the duplicate.

A delivery is a POST of the envelope {"id", "type", "workspace", "occurredAt", "data"} with the
headers Kefu-Event, Kefu-Delivery, Kefu-Timestamp and Kefu-Signature
("t={timestamp},v1={hex HMAC-SHA256(secret, f'{timestamp}.' + body)}", the secret's UTF-8 bytes as
the key). Integrators check it with `verify`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import random
import secrets
import socket
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Callable, Iterable, Protocol
from urllib.parse import urlsplit, urlunsplit

from .errors import InvalidRequest
from .models import new_id, now_iso

log = logging.getLogger(__name__)

EVENT_TYPES: tuple[str, ...] = (
    "message.created",
    "conversation.opened",
    "conversation.assigned",
    "conversation.closed",
    "ticket.created",
    "ticket.updated",
    "ticket.status_changed",
    "ticket.commented",
    "ticket.escalated",
    "csat.submitted",
)
ALL_EVENTS = "*"
SECRET_PREFIX = "whsec_"
MAX_URL = 2048
MAX_DESCRIPTION = 200
MAX_SUBSCRIPTIONS = 20  # per workspace: the REST route should refuse more (each one is a delivery per event)
USER_AGENT = "kefu-webhooks/1"
SIGNATURE_TOLERANCE_S = 300
MAX_RETRY_AFTER_S = 5.0
MAX_ERROR = 200

# ---------------------------------------------------------------- subscriptions


@dataclass(frozen=True)
class Subscription:
    workspace: str
    id: str
    url: str
    events: tuple[str, ...]  # EVENT_TYPES members, or ("*",) for all of them
    secret: str
    active: bool = True
    description: str = ""
    created_at: str = field(default_factory=now_iso)

    def wants(self, event_type: str) -> bool:
        return self.active and (ALL_EVENTS in self.events or event_type in self.events)

    def public(self) -> dict:
        """What the REST API shows. Never the secret: it is shown once, when it is made."""
        return {"subscriptionId": self.id, "workspace": self.workspace, "url": self.url,
                "events": list(self.events), "active": self.active, "description": self.description,
                "createdAt": self.created_at}


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


_FIELDS = {"url", "events", "description", "active"}


def parse_subscription(workspace: str, body: dict, *, allow_private: bool) -> Subscription:
    """A new subscription from a REST body {"url", "events", "description"?, "active"?}, with a new id
    and secret. Raises InvalidRequest with what is wrong."""
    if not isinstance(body, dict):
        raise InvalidRequest("a subscription is an object with url and events")
    _no_unknown(body)
    if "url" not in body or "events" not in body:
        raise InvalidRequest("a subscription needs url and events")
    return Subscription(
        workspace=workspace, id=new_id("wh"), url=parse_url(body["url"], allow_private=allow_private),
        events=parse_events(body["events"]), secret=new_secret(), active=_active(body.get("active", True)),
        description=_description(body.get("description", "")),
    )


def update_subscription(current: Subscription, body: dict, *, allow_private: bool) -> Subscription:
    """A change of url, events, description or active (a PATCH); id, secret and createdAt stay."""
    if not isinstance(body, dict):
        raise InvalidRequest("a subscription change is an object")
    _no_unknown(body)
    changes: dict = {}
    if "url" in body:
        changes["url"] = parse_url(body["url"], allow_private=allow_private)
    if "events" in body:
        changes["events"] = parse_events(body["events"])
    if "description" in body:
        changes["description"] = _description(body["description"])
    if "active" in body:
        changes["active"] = _active(body["active"])
    return replace(current, **changes)


def rotate_secret(current: Subscription) -> Subscription:
    return replace(current, secret=new_secret())


def _no_unknown(body: dict) -> None:
    unknown = set(body) - _FIELDS
    if unknown:
        raise InvalidRequest(f"unknown subscription fields: {', '.join(sorted(map(str, unknown)))} "
                             f"(allowed: {', '.join(sorted(_FIELDS))}; the secret is always made by kefu)")


def _active(value) -> bool:
    if not isinstance(value, bool):
        raise InvalidRequest("active: true or false")
    return value


def _description(value) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise InvalidRequest(f"description: text of at most {MAX_DESCRIPTION} characters")
    return value.strip()


def parse_events(value) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f'events: a non-empty list of event types, or ["{ALL_EVENTS}"] for all of them')
    if ALL_EVENTS in value:
        if len(set(value)) > 1:
            raise InvalidRequest(f'events: "{ALL_EVENTS}" already means every event type; send it alone')
        return (ALL_EVENTS,)
    unknown = [v for v in value if v not in EVENT_TYPES]
    if unknown:
        raise InvalidRequest(f"events: unknown event types {', '.join(map(repr, unknown))} "
                             f"(known: {', '.join(EVENT_TYPES)})")
    return tuple(t for t in EVENT_TYPES if t in value)  # canonical order, no duplicates


def parse_url(value, *, allow_private: bool) -> str:
    """The syntax checks, then check_destination (the host must resolve to public addresses)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest("url: the https URL to deliver events to")
    url = value.strip()
    if len(url) > MAX_URL:
        raise InvalidRequest(f"url: at most {MAX_URL} characters")
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise InvalidRequest("url: no spaces or control characters")
    check_destination(url, allow_private)
    return url


class UnresolvableHost(InvalidRequest):
    """The host name does not resolve (now): refused when subscribing, retried when delivering."""


Resolver = Callable[[str, int], list[str]]


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


resolver: Resolver = _resolve  # module level, so that tests can point names at addresses they control


def _blocked(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Anything but a global unicast address: private, loopback, link-local (the metadata service),
    shared (CGNAT), reserved, multicast, unspecified; also private IPv4 inside IPv6 forms."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in ipaddress.ip_network("64:ff9b::/96"):  # NAT64
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is None and address.teredo:
            embedded = address.teredo[1]
        if embedded is not None and _blocked(embedded):
            return True
    return not address.is_global or address.is_multicast or address.is_unspecified


def check_destination(url: str, allow_private: bool) -> list[str]:
    """Refuses URLs that must not be called: not https (http only when allow_private), credentials in
    the URL, no host, a fragment, and hosts that are (or resolve to) non-public addresses unless
    allow_private. Returns the addresses the host resolves to (all of them checked); the sender
    connects to the first, so a name that changes its answer afterwards cannot redirect the request.
    Raises InvalidRequest (UnresolvableHost when the name does not resolve)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise InvalidRequest(f"url: not a valid URL ({error})") from None
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_private):
        raise InvalidRequest("url: must start with https://")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidRequest("url: no user name or password in the URL (each delivery is signed instead)")
    host = parts.hostname
    if not host:
        raise InvalidRequest("url: no host name")
    if parts.fragment:
        raise InvalidRequest("url: no #fragment (it is never sent to the server)")
    port = port or (443 if scheme == "https" else 80)
    try:
        literal = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        literal = None
    if literal is not None:
        if _blocked(literal) and not allow_private:
            raise InvalidRequest(f"url: {host} is not a public address")
        return [str(literal)]
    if not allow_private and (host == "localhost" or host.endswith((".localhost", ".local", ".internal"))):
        raise InvalidRequest(f"url: {host} is not a public host")
    try:
        addresses = resolver(host, port)
    except (OSError, UnicodeError):
        raise UnresolvableHost(f"url: the host {host} does not resolve") from None
    if not addresses:
        raise UnresolvableHost(f"url: the host {host} does not resolve")
    if not allow_private:
        for address in addresses:
            try:
                parsed = ipaddress.ip_address(address.split("%", 1)[0])
            except ValueError:
                raise InvalidRequest(f"url: {host} resolves to an unusable address") from None
            if _blocked(parsed):
                raise InvalidRequest(f"url: {host} resolves to a non-public address")
    return addresses


# ---------------------------------------------------------------- signatures


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance_s: int = SIGNATURE_TOLERANCE_S) -> bool:
    """What an integrator runs on a delivery: the Kefu-Signature header matches the raw body and was
    made within tolerance_s of now. Accepts several v1 values (one per secret during a rotation)."""
    if not isinstance(header, str):
        return False
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not timestamp.isdigit() or not signatures:
        return False
    if abs(now - int(timestamp)) > tolerance_s:
        return False
    expected = sign(secret, int(timestamp), body).split("v1=", 1)[1]
    matched = False
    for candidate in signatures:
        matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    return matched


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    workspace: str
    occurred_at: str
    data: dict


def envelope(event: Event) -> dict:
    return {"id": event.id, "type": event.type, "workspace": event.workspace, "occurredAt": event.occurred_at,
            "data": event.data}


def event_body(event: Event) -> bytes:
    return json.dumps(envelope(event), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def event_id(*parts) -> str:
    """Deterministic: the same source (item, version, history event) gives the same id."""
    return "evt_" + hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:32]


def _plain(value):
    """Stream image values to JSON: Decimal to int or float, sets to sorted lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_plain(v) for v in value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return None
    return value


def _int(value, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def events_from_conversation_change(old: dict | None, new: dict | None) -> list[Event]:
    """The events one Conversations stream record means. `old` is None for an insert, so the table's
    stream must carry old images (NEW_AND_OLD_IMAGES) for assignments and closes to be told apart."""
    if new is None:
        return []  # a deletion (TTL, a dropped connection) is no event
    pk, sk = str(new.get("pk", "")), str(new.get("sk", ""))
    workspace, marker, conversation_id = pk.partition("#C#")
    if not marker or not workspace or not conversation_id:
        return []
    new = _plain(new)
    old = _plain(old) if old is not None else None
    if sk.startswith("MSG#"):
        if old is not None:
            return []  # messages are written once; a rewrite is not a new message
        data = {"conversationId": conversation_id, "seq": _int(new.get("seq")),
                "sender": {"role": new.get("senderRole"), "id": new.get("senderId"),
                           "name": new.get("senderName") or ""},
                "text": new.get("text", ""), "createdAt": new.get("createdAt")}
        if new.get("channel"):
            data["channel"] = new["channel"]
        return [Event(event_id(pk, sk, "message.created"), "message.created", workspace,
                      new.get("createdAt") or now_iso(), data)]
    if sk != "META":
        return []
    base = {"conversationId": conversation_id, "channel": new.get("channel", "web"),
            "customerId": new.get("customerId"), "status": new.get("status")}
    events: list[Event] = []
    if old is None:
        opened = new.get("openedAt") or new.get("updatedAt") or now_iso()
        data = {**base, "customerName": new.get("customerName") or "", "openedAt": opened}
        for name in ("group", "language"):
            if new.get(name):
                data[name] = new[name]
        events.append(Event(event_id(pk, "conversation.opened"), "conversation.opened", workspace, opened, data))
    agent = new.get("agentId")
    if agent and agent != (old or {}).get("agentId"):
        at = new.get("assignedAt") or new.get("updatedAt") or now_iso()
        data = {**base, "agent": {"id": agent, "name": new.get("agentName") or ""}, "assignedAt": at,
                "previousAgentId": (old or {}).get("agentId")}
        if new.get("group"):
            data["group"] = new["group"]
        events.append(Event(event_id(pk, "conversation.assigned", agent, at), "conversation.assigned",
                            workspace, at, data))
    if new.get("status") == "closed" and (old or {}).get("status") != "closed":
        at = new.get("closedAt") or new.get("updatedAt") or now_iso()
        data = {**base, "reason": new.get("closeReason"), "closedAt": at,
                "agentId": new.get("agentId") or (old or {}).get("agentId")}
        events.append(Event(event_id(pk, "conversation.closed", at), "conversation.closed", workspace, at, data))
    csat = new.get("csat")
    if isinstance(csat, dict) and not (old or {}).get("csat"):
        at = csat.get("at") or now_iso()
        data = {**base, "score": _int(csat.get("score")), "comment": csat.get("comment", ""), "submittedAt": at,
                "agentId": new.get("agentId")}
        if csat.get("nps") is not None:  # the survey's 0–10 recommendation answer, when asked and answered
            data["nps"] = _int(csat.get("nps"))
        events.append(Event(event_id(pk, "csat.submitted"), "csat.submitted", workspace, at, data))
    return events


TICKET_SK = "TICKET"  # as kefu.tickets.TICKET_SK (not imported: that module is heavier than this one needs)
_SUMMARY_FIELDS = ("subject", "status", "priority", "groupId", "assigneeId", "deadline", "escalationLevel",
                   "customerId", "conversations")


def ticket_summary(image: dict, ticket_id: str) -> dict:
    """What every ticket event carries: no description, no comment text."""
    out = {"ticketId": ticket_id, "subject": image.get("subject", ""), "status": image.get("status"),
           "priority": image.get("priority"), "escalationLevel": _int(image.get("escalationLevel")),
           "customerId": image.get("customerId"), "deadline": image.get("deadline"),
           "groupId": image.get("groupId"),
           "assignee": {"id": image["assigneeId"], "name": image.get("assigneeName") or ""}
           if image.get("assigneeId") else None,
           "source": image.get("source"), "createdAt": image.get("createdAt"),
           "updatedAt": image.get("updatedAt") or image.get("createdAt")}
    return out


def _history(image: dict | None) -> list[dict]:
    history = (image or {}).get("history")
    return [e for e in history if isinstance(e, dict)] if isinstance(history, list) else []


def _key(event: dict) -> str:
    return json.dumps(event, sort_keys=True, default=str)


def events_from_ticket_change(old: dict | None, new: dict | None) -> list[Event]:
    """The events one Tickets stream record (sk "TICKET") means. The new history events say what
    happened (escalated, commented, updated, linked); a status change is ticket.status_changed
    whether or not its history event is there. Comment items (sk "CM#") are no events of their own:
    the ticket's "commented" history event is."""
    if new is None or str(new.get("sk", "")) != TICKET_SK:
        return []
    pk = str(new.get("pk", ""))
    workspace, marker, ticket_id = pk.partition("#T#")
    if not marker or not workspace or not ticket_id:
        return []
    new = _plain(new)
    old = _plain(old) if old is not None else None
    summary = ticket_summary(new, ticket_id)
    version = new.get("version", "")
    updated_at = new.get("updatedAt") or new.get("createdAt") or now_iso()
    if old is None:
        created = new.get("createdAt") or updated_at
        return [Event(event_id(pk, "ticket.created"), "ticket.created", workspace, created,
                      {**summary, "createdBy": new.get("createdBy")})]
    seen = {_key(e) for e in _history(old)}
    fresh = [e for e in _history(new) if _key(e) not in seen]
    events: list[Event] = []
    status_event = None
    if old.get("status") != new.get("status"):
        status_event = next((e for e in reversed(fresh) if e.get("type") == "status"), None) or {}
        at = status_event.get("at") or updated_at
        data = {**summary, "from": old.get("status"), "to": new.get("status"),
                "reason": status_event.get("reason"), "by": _by(status_event)}
        events.append(Event(event_id(pk, "ticket.status_changed", version, at, old.get("status"), new.get("status")),
                            "ticket.status_changed", workspace, at, data))
    for entry in fresh:
        kind, at = entry.get("type"), entry.get("at") or updated_at
        if kind in ("status", "created", "trimmed", "damaged"):
            continue  # status: above; trimmed: the history was shortened, nothing happened
        if kind == "escalated":
            data = {**summary, "level": _int(entry.get("level")), "priority": entry.get("priority"),
                    "group": entry.get("group"), "escalationDeadline": entry.get("deadline")}
            events.append(Event(event_id(pk, "ticket.escalated", entry.get("level"), at), "ticket.escalated",
                                workspace, at, data))
        elif kind == "commented":
            comment = {"commentId": entry.get("commentId"), "internal": bool(entry.get("internal")),
                       "by": _by(entry), "createdAt": at}
            events.append(Event(event_id(pk, "ticket.commented", entry.get("commentId")), "ticket.commented",
                                workspace, at, {**summary, "comment": comment}))
        else:  # updated, linked, and whatever kinds come later
            data = {**summary, "change": kind, "by": _by(entry)}
            if isinstance(entry.get("changes"), dict):
                data["changes"] = {k: v for k, v in entry["changes"].items() if k != "description"}
                if "description" in entry["changes"]:
                    data["changes"]["description"] = "(changed)"
            if entry.get("conversationId"):
                data["conversationId"] = entry["conversationId"]
            events.append(Event(event_id(pk, "ticket.updated", version, _key(entry)), "ticket.updated",
                                workspace, at, data))
    if not events and not fresh and any(old.get(f) != new.get(f) for f in _SUMMARY_FIELDS):
        # changed without an event in the history (by hand, a migration): still an update
        events.append(Event(event_id(pk, "ticket.updated", version, updated_at), "ticket.updated", workspace,
                            updated_at, {**summary, "change": "updated", "by": None}))
    return events


def events_from_stream_record(event_name, old: dict | None, new: dict | None) -> list[Event]:
    """For a stream consumer of either table: picks the mapping by the item's key. event_name is
    "INSERT" / "MODIFY" / "REMOVE" (or Powertools' enum). A MODIFY without its old image (a stream
    of NEW_IMAGE only) is skipped: it would look like an insert and repeat conversation.opened."""
    name = getattr(event_name, "name", event_name)
    old, new = old or None, new or None  # Powertools gives {} for a missing image
    if name == "INSERT":
        old = None
    if name == "REMOVE" or new is None or (name == "MODIFY" and old is None):
        return []
    pk = str(new.get("pk", ""))
    if "#C#" in pk:
        return events_from_conversation_change(old, new)
    if "#T#" in pk:
        return events_from_ticket_change(old, new)
    return []


def _by(entry: dict) -> dict | None:
    if not entry.get("by"):
        return None
    return {"id": entry["by"], "role": entry.get("byRole") or "system"}


# ---------------------------------------------------------------- delivery


@dataclass(frozen=True)
class Attempt:
    """One POST: the status code, or None when no response came (error says why)."""

    status: int | None
    error: str | None = None
    retry_after_s: float | None = None
    retryable: bool | None = None  # None: by the status (no response, 429 and 5xx are retried)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def should_retry(self) -> bool:
        if self.retryable is not None:
            return self.retryable
        return self.status is None or self.status == 429 or self.status >= 500


class Sender(Protocol):
    def send(self, subscription: Subscription, event: Event, delivery_id: str, *, timeout_s: float) -> Attempt:
        """One POST that takes at most about timeout_s (the dispatcher's remaining budget; a sender
        caps it with its own timeout). Errors are returned as an Attempt, not raised."""


@dataclass(frozen=True)
class DeliveryResult:
    subscription_id: str
    workspace: str
    event_id: str
    event_type: str
    delivery_id: str
    ok: bool
    attempts: int
    status_code: int | None
    error: str | None
    duration_ms: int
    at: str

    def public(self) -> dict:
        return {"deliveryId": self.delivery_id, "subscriptionId": self.subscription_id, "eventId": self.event_id,
                "eventType": self.event_type, "ok": self.ok, "attempts": self.attempts,
                "statusCode": self.status_code, "error": self.error, "durationMs": self.duration_ms, "at": self.at}


class Recorder(Protocol):
    def record(self, result: DeliveryResult) -> None: ...


def delivery_id(event: Event, subscription: Subscription) -> str:
    """Deterministic per (event, subscription): a redelivered stream record sends the same id again."""
    return "whd_" + hashlib.sha256(f"{event.id}\x1f{subscription.id}".encode()).hexdigest()[:24]


GAVE_UP = "gave up: time budget"
SKIPPED = "skipped: subscriber failing"


class _Job:
    __slots__ = ("event", "subscription", "delivery_id", "started", "attempts", "last", "done")

    def __init__(self, event: Event, subscription: Subscription):
        self.event, self.subscription = event, subscription
        self.delivery_id = delivery_id(event, subscription)
        self.started: float | None = None
        self.attempts = 0
        self.last: Attempt | None = None
        self.done = False


class Dispatcher:
    """Delivers events to the subscriptions that want them, concurrently and within a time budget.

    Each (event, subscription) pair is one delivery of up to `attempts` POSTs: connection errors,
    timeouts, 429 and 5xx are retried after backoff_s (a 429/503's Retry-After, up to 5 s, wins), other
    answers are final. Workers take pairs round robin across subscriptions, at most `per_subscription`
    at a time for one subscription, so a slow or dead subscriber holds only its own share of the
    workers; after `breaker` deliveries to it fail in a row, its remaining pairs of this call fail
    without being tried. The call returns within budget_s: what is not finished by then is recorded
    as failed with "gave up: time budget". Every final result goes to recorder.record once.
    """

    def __init__(self, sender: Sender, recorder: Recorder, *, attempts: int = 4,
                 backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0), max_workers: int = 8, budget_s: float = 50,
                 per_subscription: int = 4, breaker: int = 3, clock: Callable[[], float] = time.monotonic):
        if attempts < 1 or max_workers < 1 or per_subscription < 1:
            raise ValueError("attempts, max_workers and per_subscription are at least 1")
        self.sender, self.recorder = sender, recorder
        self.attempts, self.backoff_s = attempts, tuple(backoff_s) or (0.0,)
        self.max_workers, self.budget_s = max_workers, budget_s
        self.per_subscription, self.breaker = per_subscription, breaker
        self.clock = clock

    def dispatch(self, events: Iterable[Event], subscriptions: Iterable[Subscription]) -> list[DeliveryResult]:
        subscriptions = [s for s in subscriptions if s.active]
        jobs = [_Job(e, s) for e in events for s in subscriptions if s.workspace == e.workspace and s.wants(e.type)]
        if not jobs:
            return []
        run = _Run(self, jobs, self.clock() + self.budget_s)
        workers = min(self.max_workers, len(jobs))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook")
        try:
            futures = [pool.submit(run.work) for _ in range(workers)]
            wait(futures, timeout=max(0.0, run.deadline - self.clock()))
        finally:
            run.stop()
            pool.shutdown(wait=False, cancel_futures=True)
        for job in jobs:  # what is still in flight or waiting when the budget is spent
            run.finish(job, GAVE_UP)
        return [run.results[id(job)] for job in jobs]

    def _delay(self, attempt: int, last: Attempt) -> float:
        if last.retry_after_s is not None:
            return min(max(last.retry_after_s, 0.0), MAX_RETRY_AFTER_S)
        base = self.backoff_s[min(attempt - 1, len(self.backoff_s) - 1)]
        return base * random.uniform(0.8, 1.2)


class _Run:
    """The state of one dispatch call, shared by its workers."""

    def __init__(self, dispatcher: Dispatcher, jobs: list[_Job], deadline: float):
        self.d, self.deadline = dispatcher, deadline
        self.lock = threading.Condition()
        self.queues: dict[str, deque[_Job]] = {}
        for job in jobs:
            self.queues.setdefault(job.subscription.id, deque()).append(job)
        self.order = deque(self.queues)  # round robin over subscriptions
        self.in_flight: dict[str, int] = {sid: 0 for sid in self.queues}
        self.failures: dict[str, int] = {sid: 0 for sid in self.queues}
        self.results: dict[int, DeliveryResult] = {}
        self.stopped = False

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            self.lock.notify_all()

    def _next(self) -> _Job | None:
        with self.lock:
            while not self.stopped:
                if not any(self.queues.values()):
                    return None
                for _ in range(len(self.order)):
                    sid = self.order[0]
                    self.order.rotate(-1)
                    if self.queues[sid] and self.in_flight[sid] < self.d.per_subscription:
                        self.in_flight[sid] += 1
                        return self.queues[sid].popleft()
                self.lock.wait(timeout=max(0.01, min(0.5, self.deadline - self.d.clock())))
            return None

    def work(self) -> None:
        while (job := self._next()) is not None:
            sid = job.subscription.id
            try:
                ok = self._deliver(job)
            except Exception as error:  # never let one delivery take the worker down
                log.exception("webhook delivery crashed")
                self.finish(job, f"internal error: {type(error).__name__}")
                ok = False
            skipped: list[_Job] = []
            with self.lock:
                self.in_flight[sid] -= 1
                self.failures[sid] = 0 if ok else self.failures[sid] + 1
                if self.d.breaker and self.failures[sid] >= self.d.breaker:
                    skipped, self.queues[sid] = list(self.queues[sid]), deque()
                self.lock.notify_all()
            for other in skipped:
                self.finish(other, SKIPPED)

    def _deliver(self, job: _Job) -> bool:
        d = self.d
        job.started = d.clock()
        while True:
            remaining = self.deadline - d.clock()
            if remaining < 0.05 or self.stopped:
                self.finish(job, GAVE_UP)
                return False
            job.attempts += 1
            try:
                attempt = d.sender.send(job.subscription, job.event, job.delivery_id,
                                        timeout_s=remaining)
            except Exception as error:
                attempt = Attempt(None, _short(f"{type(error).__name__}: {error}"))
            job.last = attempt
            if attempt.ok:
                self.finish(job, None)
                return True
            if job.attempts >= d.attempts or not attempt.should_retry():
                self.finish(job, attempt.error or f"HTTP {attempt.status}")
                return False
            delay = d._delay(job.attempts, attempt)
            if d.clock() + delay >= self.deadline - 0.05:
                self.finish(job, GAVE_UP)
                return False
            with self.lock:  # a sleep that stop() cuts short
                end = d.clock() + delay
                while not self.stopped and (left := end - d.clock()) > 0:
                    self.lock.wait(timeout=left)

    def finish(self, job: _Job, error: str | None) -> None:
        """The one final result of a job, recorded once (the worker and the budget may race)."""
        with self.lock:
            if job.done:
                return
            job.done = True
            ok = error is None
            if not ok and error in (GAVE_UP, SKIPPED) and job.last is not None and job.last.error:
                error = f"{error} (last: {job.last.error})"
            elapsed = 0 if job.started is None else self.d.clock() - job.started
            result = DeliveryResult(
                subscription_id=job.subscription.id, workspace=job.subscription.workspace, event_id=job.event.id,
                event_type=job.event.type, delivery_id=job.delivery_id, ok=ok, attempts=job.attempts,
                status_code=job.last.status if job.last else None, error=_short(error) if error else None,
                duration_ms=int(elapsed * 1000), at=now_iso(),
            )
            self.results[id(job)] = result
        try:
            self.d.recorder.record(result)
        except Exception:
            log.exception("could not record a webhook delivery")


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_ERROR else text[:MAX_ERROR - 1] + "…"


# ---------------------------------------------------------------- HTTP


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())


def _host_header(parts) -> str:
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme.lower() == "https" else 80
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


def _pinned_url(parts, address: str) -> str:
    host = f"[{address}]" if ":" in address else address
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


def _pinned_adapter(pool_maxsize: int):
    """A requests adapter that connects to the address in the URL (the one check_destination
    approved) while TLS still checks the certificate for the host name in the Host header (SNI)."""
    from requests.adapters import HTTPAdapter

    class PinnedAdapter(HTTPAdapter):
        def build_connection_pool_key_attributes(self, request, verify, cert=None):
            host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
            name = request.headers.get("Host")
            if name and host_params.get("scheme") == "https":
                name = urlsplit(f"//{name}").hostname
                pool_kwargs["server_hostname"] = name
                pool_kwargs["assert_hostname"] = name
            return host_params, pool_kwargs

    return PinnedAdapter(pool_connections=16, pool_maxsize=pool_maxsize, max_retries=0)


class HttpSender:
    """POSTs a signed envelope. The destination is checked again on every attempt (a host may have
    moved to a private address since it was subscribed), the request goes to the checked address,
    redirects are not followed and no proxy from the environment is used."""

    def __init__(self, session=None, timeout_s: float = 5, allow_private: bool = False, *, pool_maxsize: int = 16):
        import requests

        self._exceptions = requests.exceptions
        self.session = session if session is not None else requests.Session()
        if isinstance(self.session, requests.Session):
            self.session.trust_env = False  # no HTTP(S)_PROXY, no .netrc credentials
            adapter = _pinned_adapter(pool_maxsize)
            self.session.mount("https://", adapter)
            self.session.mount("http://", adapter)
        self.timeout_s = timeout_s
        self.allow_private = allow_private

    def send(self, subscription: Subscription, event: Event, delivery_id: str, *,
             timeout_s: float | None = None) -> Attempt:
        timeout = max(0.05, min(self.timeout_s, timeout_s if timeout_s is not None else self.timeout_s))
        try:
            addresses = check_destination(subscription.url, self.allow_private)
        except UnresolvableHost as error:
            return Attempt(None, _short(error.message), retryable=True)
        except InvalidRequest as error:
            return Attempt(None, _short(f"refused destination: {error.message}"), retryable=False)
        parts = urlsplit(subscription.url)
        address = next((a for a in addresses if ":" not in a), addresses[0])  # IPv4 first: Lambda has no IPv6 egress
        body = event_body(event)
        timestamp = int(time.time())
        headers = {
            "Host": _host_header(parts),
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": USER_AGENT,
            "Kefu-Event": event.type,
            "Kefu-Delivery": delivery_id,
            "Kefu-Timestamp": str(timestamp),
            "Kefu-Signature": sign(subscription.secret, timestamp, body),
        }
        errors = self._exceptions
        try:
            response = self.session.post(_pinned_url(parts, address), data=body, headers=headers,
                                         timeout=(timeout, timeout), allow_redirects=False, stream=True)
        except errors.Timeout:
            return Attempt(None, f"timeout after {timeout:g} s")
        except errors.SSLError:
            return Attempt(None, "TLS error (certificate or handshake)")
        except errors.ConnectionError as error:
            text = str(error).lower()
            reason = "connection refused" if "refused" in text else \
                "connection reset" if "reset" in text or "aborted" in text else "connection failed"
            return Attempt(None, reason)
        except errors.RequestException as error:
            return Attempt(None, _short(f"request failed: {type(error).__name__}"), retryable=False)
        try:
            status = response.status_code
            retry_after = _retry_after(response.headers.get("Retry-After")) if status == 429 or status >= 500 else None
        finally:
            response.close()  # the body is never read: integrators' answers are not stored
        if 300 <= status < 400:
            return Attempt(status, f"HTTP {status} (redirects are not followed)", retryable=False)
        return Attempt(status, None if 200 <= status < 300 else f"HTTP {status}", retry_after_s=retry_after)
