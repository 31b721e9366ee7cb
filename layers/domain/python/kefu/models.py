"""Domain records. Plain dataclasses: no I/O, no AWS."""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Literal

Role = Literal["customer", "agent", "bot", "system"]
AgentRole = Literal["agent", "supervisor", "admin"]
# bot: the bot answers (issue 4); open: waiting for routing; queued / assigned: with the humans
Status = Literal["bot", "open", "queued", "assigned", "closed"]
Presence = Literal["online", "away", "offline"]
PRESENCES: tuple[str, ...] = ("online", "away", "offline")


def now_iso() -> str:
    return to_iso(datetime.now(timezone.utc))


def to_iso(moment: datetime) -> str:
    """The stored form of an instant: UTC, milliseconds, "Z" (2026-11-21T09:30:00.000Z)."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    """An ISO 8601 instant ("Z" or an offset; a naive time is taken as UTC); ValueError otherwise."""
    at = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


# the customer ids new_id("v") gives anonymous visitors (tokens.issue without a subject)
ANONYMOUS_VISITOR_ID = re.compile(r"^v_[0-9a-f]{8,40}$")


def new_id(prefix: str) -> str:
    """Sortable-ish unique id: time prefix keeps ids of one day close together in listings."""
    return f"{prefix}_{int(time.time() * 1000):x}{secrets.token_hex(5)}"


@dataclass(frozen=True)
class Principal:
    """Who is on the other end of a connection or request, as established by the token."""

    workspace: str
    role: Literal["customer", "agent"]
    id: str
    name: str = ""
    tags: tuple[str, ...] = ()
    agent_role: AgentRole | None = None  # for agents: their role in the workspace
    # the token's iat (whole seconds) where a token was read (REST, $connect); an erasure refuses the customer's
    # tokens issued at or before it (kefu.privacy). Not part of who it is: equal principals of two tokens are equal
    issued_at: int | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """Identifies the person within the workspace, across their connections."""
        return f"{self.role}#{self.id}"

    def sender(self) -> dict:
        return {"role": self.role, "id": self.id, "name": self.name}

    @property
    def anonymous_visitor(self) -> bool:
        """A customer known by nothing but a random id: an anonymous visitor token (POST .../visitor-tokens gives
        one, tokens.issue without a subject: new_id("v")), no name, no tags. Only such a token keeps its id when
        renewed, and only such a customer may open an anonymous conversation (frames.MessageFrame.anonymous)."""
        return self.role == "customer" and not self.name and not self.tags and bool(ANONYMOUS_VISITOR_ID.match(self.id))

    @property
    def is_supervisor(self) -> bool:
        return self.role == "agent" and self.agent_role in ("supervisor", "admin")


@dataclass(frozen=True)
class ConnectionRef:
    connection_id: str
    role: Literal["customer", "agent"]
    user_id: str


@dataclass
class Conversation:
    workspace: str
    id: str
    customer_id: str
    customer_name: str = ""
    customer_tags: tuple[str, ...] = ()
    channel: str = "web"
    status: Status = "open"
    agent_id: str | None = None
    agent_name: str | None = None
    last_seq: int = 0
    opened_at: str = field(default_factory=now_iso)
    # routing: what the conversation needs, where it waits, and the last decision (see routing.py)
    group: str | None = None
    language: str | None = None
    priority: int = 0
    queue_key: str | None = None
    queued_at: str | None = None
    assigned_at: str | None = None
    closed_at: str | None = None
    close_reason: str | None = None
    routing: dict | None = None
    # the bot's memory of the conversation (slots such as an order number) and the answer it
    # proposed for an agent to review (bot.py)
    bot: dict | None = None
    suggestion: dict | None = None
    csat: dict | None = None  # the customer's satisfaction once closed: {"score": 1-5, "comment", "at", "nps"?: 0-10}
    # data protection (kefu.privacy): the workspace's retention when the conversation opened (its items expire
    # that many days after they were written; None: kept until deleted) and anonymous consultation (no identity)
    retention_days: int | None = None
    anonymous: bool = False
    mask_pii: bool = False  # the customer's messages are stored masked, the originals sealed (kefu.pii)

    def is_participant(self, who: Principal) -> bool:
        if who.workspace != self.workspace:
            return False
        if who.role == "customer":
            return who.id == self.customer_id
        return who.id == self.agent_id

    def customer(self) -> dict:
        return {"id": self.customer_id, "name": self.customer_name, "tags": list(self.customer_tags)}


@dataclass(frozen=True)
class Message:
    conversation_id: str
    seq: int
    client_message_id: str
    sender: dict  # {"role", "id", "name"}
    text: str
    created_at: str
    # what the bot adds to its messages: {"articleId", "confidence", "rateable"}; or to an agent's
    # message sent from a suggestion: {"suggestion": {"articleId", "edited"}}
    meta: dict | None = None
    channel: str = "web"  # how a customer's message arrived (web, rest, wechat); replies are "web"
    # a masked message (kefu.pii.redact): {"spans": where the masked values stand in text, "sealed": the originals
    # encrypted by kefu.ports.PiiVault}; never in frames, which only say "masked": true
    pii: dict | None = None

    def frame(self) -> dict:
        frame = {
            "type": "message",
            "conversationId": self.conversation_id,
            "seq": self.seq,
            "clientMessageId": self.client_message_id,
            "sender": self.sender,
            "text": self.text,
            "createdAt": self.created_at,
        }
        meta = dict(self.meta or {})
        attachments = meta.pop("attachments", None)  # stored in meta; a frame carries them on their own
        if attachments:
            frame["attachments"] = attachments
        if meta:
            frame["meta"] = meta
        if self.channel != "web":  # absent means the widget (or the console)
            frame["channel"] = self.channel
        if self.pii:
            frame["masked"] = True
        return frame

    def public(self) -> dict:
        """The message as listed in sync and history."""
        frame = self.frame()
        del frame["type"]
        return frame


@dataclass(frozen=True)
class Agent:
    workspace: str
    id: str
    name: str
    role: AgentRole = "agent"
    groups: tuple[str, ...] = ()
    languages: tuple[str, ...] = ("zh", "en")
    max_concurrent: int = 5
    presence: Presence = "offline"
    connections: int = 0
    load: int = 0
    last_assigned_at: str | None = None  # round robin: the longest-waiting agent goes next
    disconnected_at: str | None = None  # when the last connection dropped (the grace timer's token)

    def public(self) -> dict:
        return {"agentId": self.id, "name": self.name, "role": self.role, "groups": list(self.groups),
                "languages": list(self.languages), "maxConcurrent": self.max_concurrent,
                "presence": self.presence, "connections": self.connections, "load": self.load}

    @property
    def available(self) -> bool:
        return self.presence == "online" and self.connections > 0 and self.load < self.max_concurrent
