"""The WebSocket protocol: inbound frames (validated) and outbound frames (built).

docs/protocol.md documents every frame here; keep the two in step.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints, ValidationError, model_validator

from .attachments import MAX_PER_MESSAGE as MAX_ATTACHMENTS
from .attachments import AttachmentRef
from .errors import InvalidFrame, MalformedJson, UnknownAction

MAX_TEXT_CHARS = 4000
MAX_NOTE_CHARS = 1000
SYNC_PAGE = 200

Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]
# skill groups are named by people: 售后, 技术, billing (letters of any script, digits, _ . : -)
GroupId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\w.:\-]+$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_CHARS)]
Language = Annotated[str, StringConstraints(min_length=2, max_length=16, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]+)*$")]


class _Frame(BaseModel):
    # unknown fields are ignored so that newer clients keep working against older servers
    model_config = ConfigDict(extra="ignore", frozen=True)


class MessageFrame(_Frame):
    action: Literal["message"]
    conversationId: Id | None = None
    clientMessageId: Id
    # may be empty when the message carries attachments
    text: Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_TEXT_CHARS)] = ""
    # references from upload tickets (POST /conversations/{id}/attachments); checked before the message is stored
    attachments: list[AttachmentRef] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)
    # only when the message opens a conversation: what it needs (the widget's topic picker)
    group: GroupId | None = None
    language: Language | None = None
    # customers: the quick reply (chip) tapped to send this text (kefu.chips); stored as meta.quickReply, with
    # meta.experiment / meta.variant of the visitor's quick_reply_wording experiment (decided by the server)
    quickReply: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")] | None = None
    # customers, only when the message opens a conversation (no conversationId): anonymous consultation chosen by
    # the visitor. The conversation is marked anonymous as under the workspace setting (kefu.privacy): no name or
    # tags stored. Accepted from an anonymous visitor token only (Principal.anonymous_visitor: a random id, no name,
    # no tags), so that no identified customer id is stored either (ConversationService._open_conversation)
    anonymous: StrictBool = False  # "true", 1 are not answers

    @model_validator(mode="after")
    def _not_empty(self) -> MessageFrame:
        if not self.text and not self.attachments:
            raise ValueError("text: a message needs text or at least one attachment")
        if self.anonymous and self.conversationId is not None:
            raise ValueError("anonymous: only on a message that opens a conversation (without conversationId)")
        return self


class TypingFrame(_Frame):
    action: Literal["typing"]
    conversationId: Id
    typing: bool = True


class SyncFrame(_Frame):
    action: Literal["sync"]
    conversationId: Id
    afterSeq: int = Field(ge=0, le=10**12)
    limit: int = Field(default=SYNC_PAGE, ge=1, le=SYNC_PAGE)


class InboxFrame(_Frame):
    action: Literal["inbox"]


class RouteFrame(_Frame):
    action: Literal["route"]
    conversationId: Id
    group: GroupId | None = None  # the skill the customer picked (售后, 技术...); the workspace default otherwise
    language: Language | None = None


class CloseFrame(_Frame):
    action: Literal["close"]
    conversationId: Id
    resolved: bool = True


class CancelFrame(_Frame):
    """The customer stops waiting for a human."""

    action: Literal["cancel"]
    conversationId: Id


class PresenceFrame(_Frame):
    action: Literal["presence"]
    status: Literal["online", "away", "offline"]


class SnapshotFrame(_Frame):
    action: Literal["snapshot"]


class AssignFrame(_Frame):
    """A supervisor gives a waiting (or any open) conversation to an agent by hand."""

    action: Literal["assign"]
    conversationId: Id
    agentId: Id


Short = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class OfflineFormFrame(_Frame):
    """What a customer leaves when nobody can answer now; it becomes a ticket."""

    action: Literal["offline_form"]
    conversationId: Id | None = None
    name: Short
    contact: Short
    question: Text


class CsatFrame(_Frame):
    """The customer's satisfaction with a closed conversation: 1–5 stars and an optional comment, once; and,
    when the workspace asks it (the `closed` frame's survey.nps), how likely they are to recommend it, 0–10."""

    action: Literal["csat"]
    conversationId: Id
    score: StrictInt = Field(ge=1, le=5)  # "5" is not a score
    comment: Annotated[str, StringConstraints(strip_whitespace=True, max_length=1000)] = ""
    nps: StrictInt | None = Field(default=None, ge=0, le=10)  # the Net Promoter question; "9", 9.0, true are not answers


class HandoffTarget(_Frame):
    agentId: Id | None = None
    group: GroupId | None = None

    @model_validator(mode="after")
    def _one_target(self) -> HandoffTarget:
        if (self.agentId is None) == (self.group is None):
            raise ValueError("give exactly one of agentId or group")
        return self


class HandoffFrame(_Frame):
    action: Literal["handoff"]
    conversationId: Id
    to: HandoffTarget
    note: Annotated[str, StringConstraints(max_length=MAX_NOTE_CHARS)] = ""


class RateFrame(_Frame):
    """The customer's verdict on one of the bot's answers."""

    action: Literal["rate"]
    conversationId: Id
    seq: int = Field(ge=1, le=10**12)
    helpful: StrictBool  # "yes" is not a verdict


class SuggestionFrame(_Frame):
    """The agent's one action on the answer the bot suggested: send it, send an edited version, or reject it.
    saveAs keeps what was sent for next time: "improve" the suggested article (the customer's question
    becomes one of its examples, an edit its answer) or make a "new" article of an edit. Personal data
    (order and tracking numbers, phone numbers, e-mail addresses) is removed from what is saved."""

    action: Literal["suggestion"]
    conversationId: Id
    suggestionId: Id
    decision: Literal["send", "edit", "reject"]
    text: Text | None = None
    saveAs: Literal["improve", "new"] | None = None

    @model_validator(mode="after")
    def _coherent(self) -> SuggestionFrame:
        if self.decision == "edit" and self.text is None:
            raise ValueError("an edit needs the edited text")
        if self.decision != "edit" and self.text is not None:
            raise ValueError("text is only for an edit")
        if self.decision == "reject" and self.saveAs is not None:
            raise ValueError("a rejected suggestion cannot be saved")
        if self.saveAs == "new" and self.decision != "edit":
            raise ValueError("a new article needs an edited answer (a sent suggestion improves its article)")
        return self


FRAMES: dict[str, type[_Frame]] = {
    "message": MessageFrame,
    "typing": TypingFrame,
    "sync": SyncFrame,
    "inbox": InboxFrame,
    "route": RouteFrame,
    "handoff": HandoffFrame,
    "close": CloseFrame,
    "cancel": CancelFrame,
    "presence": PresenceFrame,
    "snapshot": SnapshotFrame,
    "assign": AssignFrame,
    "offline_form": OfflineFormFrame,
    "csat": CsatFrame,
    "rate": RateFrame,
    "suggestion": SuggestionFrame,
}


def decode(body: str | None) -> dict[str, Any]:
    """Parse a raw frame into a JSON object, or raise MalformedJson."""
    try:
        data = json.loads(body or "")
    except (ValueError, TypeError):
        raise MalformedJson("frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise MalformedJson("frame must be a JSON object")
    return data


def parse(body: str | None, expected: type[_Frame] | None = None) -> _Frame:
    """Validate a frame. `expected` pins the model (a route handler knows its action)."""
    data = decode(body)
    action = data.get("action")
    model = expected or (FRAMES.get(action) if isinstance(action, str) else None)
    if model is None:
        problem = f"unknown action {action[:40]!r}" if isinstance(action, str) else "frame has no \"action\" string"
        raise UnknownAction(problem, client_message_id=_cmid(data))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]) or "frame", "problem": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        summary = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        raise InvalidFrame(summary, client_message_id=_cmid(data), details=problems) from None


def request_id(body: str | None) -> str | None:
    """The optional requestId a client puts on any frame; its direct reply (or error) echoes it."""
    if not body or '"requestId"' not in body:
        return None
    try:
        value = json.loads(body).get("requestId")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable() else None


def _cmid(data: dict[str, Any]) -> str | None:
    cmid = data.get("clientMessageId")
    return cmid if isinstance(cmid, str) and 0 < len(cmid) <= 64 else None


# ---------------------------------------------------------------- outbound


def error(code: str, message: str, client_message_id: str | None = None, details: Any = None) -> dict:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if client_message_id:
        frame["clientMessageId"] = client_message_id
    if details:
        frame["details"] = details
    return frame
