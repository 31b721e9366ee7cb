"""REST API for widgets, apps and integrators (Powertools resolver, validated by pydantic)."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, CORSConfig, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import BaseModel, Field, StrictBool, StringConstraints

from kefu import attachments, audit, experiments, schema, step_up, tokens, wiring
from kefu.errors import Busy, Conflict, ConversationClosed, Forbidden, InvalidRequest, KefuError, NotFound, Unauthorized
from kefu.knowledge import MAX_IMPORT_LINES, parse_article, parse_jsonl
from kefu.models import Agent, Principal, now_iso
from kefu.routing import RoutingSettings
from kefu.logs import logger

_origins = [o.strip() for o in os.environ.get(schema.ENV_CORS_ORIGINS, "*").split(",") if o.strip()] or ["*"]
# responses carry the CORS headers (the preflight is answered by API Gateway, or here on the local stack)
app = APIGatewayRestResolver(enable_validation=True, cors=CORSConfig(
    allow_origin=_origins[0], extra_origins=_origins[1:], max_age=3600,
    allow_headers=["Content-Type", "Authorization", "X-Api-Key", "Idempotency-Key", "X-Kefu-Step-Up"],
    expose_headers=["Retry-After"]))  # not CORS-safelisted: the console reads it on a 429
store = wiring.store()

STATUS = {"unauthorized": 401, "forbidden": 403, "not_found": 404, "conflict": 409, "invalid_request": 422,
          "conversation_closed": 409,
          "step_up_required": 403, "rate_limited": 429,  # issue 8: step-up (kefu.step_up)
          "busy": 503}  # retryable: nothing was stored (e.g. personal data could not be sealed just now)
RANK = {"agent": 0, "supervisor": 1, "admin": 2}
MAX_CAPACITY = 50  # concurrent conversations; more is a typo, not a workload

SkillGroup = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[\w.:\-]+$")]
LanguageCode = Annotated[str, StringConstraints(min_length=2, max_length=16, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]+)*$")]


class VisitorTokenRequest(BaseModel):
    name: str = Field(default="", max_length=80)


class VisitorToken(BaseModel):
    token: str
    customerId: str
    workspace: str
    expiresIn: int


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


@app.post("/workspaces/<workspace>/visitor-tokens")
def visitor_token(workspace: str, body: VisitorTokenRequest) -> VisitorToken:
    """An anonymous visitor token for the web widget: a fresh customer id in this workspace. With
    `Authorization: Bearer` an anonymous, unnamed visitor token of this workspace (the one the widget got on
    the host page, for the visitor's experiment variants), the new token keeps its customer id: the visitor
    names themself (or renews the token) and stays the same visitor. A token of a customer erased since it was
    issued (DELETE /workspaces/{ws}/customers/{id}) is refused (401) and renews nothing."""
    if not tokens.WORKSPACE_RE.match(workspace) or not store.workspace_exists(workspace):
        raise NotFound("no such workspace")
    subject = None
    if app.current_event.headers.get("Authorization") or app.current_event.headers.get("authorization"):
        held = _caller()
        if held.workspace != workspace or held.role != "customer":
            raise Forbidden("a visitor token of this workspace keeps its customer id")
        if not held.anonymous_visitor:
            raise Forbidden("only an anonymous, unnamed visitor token keeps its customer id")
        subject = held.id
    token = tokens.issue(wiring.signing_key(), kind="visitor", workspace=workspace, subject=subject, name=body.name)
    who = tokens.verify(wiring.signing_key(), token)
    return VisitorToken(token=token, customerId=who.id, workspace=workspace, expiresIn=tokens.DEFAULT_TTL_S)


@app.get("/conversations/<conversation_id>/messages")
def messages(
    conversation_id: str,
    afterSeq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict:
    """A page of a conversation's messages after afterSeq, for its customer, its agent and (read only) the
    workspace's supervisors."""
    conversation = _participant_conversation(conversation_id, supervisors_read=True)
    return _messages_page(conversation.workspace, conversation_id, afterSeq, limit)


class OriginalMessage(BaseModel):
    conversationId: str
    seq: int
    text: str = Field(description="the message as the customer wrote it, personal data included")
    masked: bool = Field(description="whether it was stored masked (false: text is the stored text)")


@app.get("/conversations/<conversation_id>/messages/<seq>/original")
def original_message(conversation_id: str, seq: Annotated[int, Path(ge=1)]) -> OriginalMessage:
    """The original of a message stored with personal data masked (workspaces with maskPii, kefu.pii): for staff
    of at least the workspace's piiRevealRole (supervisors and admins by default; with "agent", also the
    conversation's agent). Every reveal, and every refused one, goes into the audit log."""
    from kefu import pii
    from kefu.privacy import PrivacySettings

    who = _caller()  # once: the token check, and for a customer the erasure read, are not repeated
    conversation = store.get_conversation(who.workspace, conversation_id)
    agent = store.get_agent(who.workspace, who.id) if who.role == "agent" else None
    oversees = agent is not None and agent.role in ("supervisor", "admin")
    if conversation is None or not (conversation.is_participant(who) or oversees):
        raise NotFound("no such conversation")  # as _participant_conversation: 404 for everyone else
    if who.role != "agent":
        raise Forbidden("originals of masked messages are for staff")
    if agent is None:
        raise Unauthorized("unknown agent")
    message = store.get_message(who.workspace, conversation_id, seq)
    if message is None:
        raise NotFound("no such message")
    settings = PrivacySettings.parse(store.privacy_settings(who.workspace))
    if not settings.may_reveal(agent.role, assigned=conversation.agent_id == agent.id):
        _audit(who.workspace, "pii.reveal", conversation_id, by=agent, outcome="refused", seq=seq)
        raise Forbidden(f"seeing masked personal data needs the {settings.pii_reveal_role} role in this workspace")
    try:
        text = pii.reveal(wiring.pii_vault(), who.workspace, conversation_id, message.text, message.pii)
    except Exception as error:  # KMS unavailable or a damaged record: say so, show nothing
        logger.warning("revealing a masked message failed: %s", type(error).__name__)
        raise Busy("the original could not be opened just now; try again") from None
    if message.pii:
        _audit(who.workspace, "pii.reveal", conversation_id, by=agent, seq=seq)
    return OriginalMessage(conversationId=conversation_id, seq=seq, text=text, masked=bool(message.pii))


# ---------------------------------------------------------------- attachments (participants of the conversation)


class AttachmentRequest(BaseModel):
    name: str = Field(min_length=1, max_length=255, description="the file's name; the reference carries it made "
                      "safe (no folders, no control characters, an extension of its type)")
    contentType: str = Field(min_length=1, max_length=127, description="images: image/png, image/jpeg, image/gif, "
                             "image/webp (10 MB); files: application/pdf, text/plain, text/csv, .docx, .xlsx (20 MB)")
    size: int = Field(ge=1, le=attachments.FILE_MAX_BYTES, description="bytes, as the upload will send them")
    width: int | None = Field(default=None, ge=1, le=attachments.MAX_DIMENSION, description="images only")
    height: int | None = Field(default=None, ge=1, le=attachments.MAX_DIMENSION, description="images only")


class UploadTicket(BaseModel):
    url: str = Field(description="POST the form here: every field of `fields`, then the file as `file` (last)")
    fields: dict[str, str]
    expiresIn: int = Field(description="seconds the ticket stays valid")
    maxBytes: int = Field(description="the largest file this type may be")
    attachment: attachments.AttachmentRef = Field(description="put this into the message's attachments once "
                                                  "the upload has succeeded")


class DownloadLink(BaseModel):
    url: str = Field(description="a presigned GET of the file, valid expiresIn seconds")
    expiresIn: int
    contentType: str
    size: int


@app.post("/conversations/<conversation_id>/attachments", status_code=201)
def attachment_upload(conversation_id: str, body: AttachmentRequest) -> UploadTicket:
    """An upload ticket for one file (the conversation's customer or agent): a presigned POST restricted to
    one new object key, this Content-Type and at most the type's limit, valid 5 minutes. Send the returned
    `attachment` in a message (WebSocket `message` frame, `attachments`) once the upload has succeeded."""
    conversation = _participant_conversation(conversation_id)
    if conversation.status == "closed":
        raise ConversationClosed("the conversation is closed")
    try:
        kind = attachments.check_upload(body.contentType, body.size)
        name = attachments.safe_name(body.name, kind.content_type)
        image = kind.kind == "image"
        ref = attachments.AttachmentRef(key=attachments.new_key(conversation.workspace, conversation.id, name),
                                        name=name, contentType=kind.content_type, size=body.size,
                                        width=body.width if image else None, height=body.height if image else None)
    except attachments.AttachmentError as refused:
        raise InvalidRequest(str(refused)) from None
    post = wiring.attachment_store().upload_ticket(ref.key, ref.contentType, kind.max_bytes,
                                                   attachments.UPLOAD_TTL_S)
    return UploadTicket(url=post["url"], fields=post["fields"], expiresIn=attachments.UPLOAD_TTL_S,
                        maxBytes=kind.max_bytes, attachment=ref)


@app.get("/conversations/<conversation_id>/attachments/download")
def attachment_download(
    conversation_id: str,
    key: Annotated[str, Query(min_length=1, max_length=300, description="the attachment's key")],
    name: Annotated[str | None, Query(max_length=255, description="the name to save it as (default: from the key)")]
    = None,
) -> DownloadLink:
    """A short-lived download link of one of the conversation's attachments (its customer, its agent, the
    workspace's supervisors). Images open inline; every other type downloads as a file."""
    conversation = _participant_conversation(conversation_id, supervisors_read=True)
    if not attachments.owns(key, conversation.workspace, conversation.id):
        raise NotFound("no such attachment")
    store_ = wiring.attachment_store()
    stored = store_.head(key)
    if stored is None:
        raise NotFound("no such attachment")
    try:
        kind = attachments.file_type(stored.content_type)
    except attachments.AttachmentError:
        raise NotFound("no such attachment") from None  # never hand out a link to a type we refuse
    filename = attachments.safe_name(name or key.rsplit("/", 1)[-1], kind.content_type)
    url = store_.download_url(key, kind.content_type, attachments.disposition(filename, kind.content_type),
                              attachments.DOWNLOAD_TTL_S)
    return DownloadLink(url=url, expiresIn=attachments.DOWNLOAD_TTL_S, contentType=kind.content_type,
                        size=stored.size)


def _participant_conversation(conversation_id: str, supervisors_read: bool = False):
    """The conversation, if the caller (token) is its customer or its agent (or, to read, a supervisor of its
    workspace); the same 404 otherwise."""
    from kefu.conversations import oversees

    who = _caller()
    conversation = store.get_conversation(who.workspace, conversation_id)
    if conversation is None or not (conversation.is_participant(who) or (supervisors_read and oversees(store, who))):
        raise NotFound("no such conversation")
    return conversation


class AgentProfile(BaseModel):
    name: str = Field(min_length=1, max_length=80)
    role: Literal["agent", "supervisor", "admin"] = "agent"
    groups: list[SkillGroup] = Field(default_factory=list, max_length=20)
    languages: list[LanguageCode] = Field(default_factory=lambda: ["zh"], min_length=1, max_length=10)
    maxConcurrent: int = Field(default=5, ge=1, le=MAX_CAPACITY)


@app.get("/workspaces/<workspace>/agents")
def list_agents(workspace: str) -> dict:
    """Every agent with presence and load (supervisors and admins)."""
    _staff(workspace, "supervisor")
    return _agents(workspace)


def _agents(workspace: str) -> dict:
    return {"items": [a.public() for a in store.list_agents(workspace)]}


@app.put("/workspaces/<workspace>/agents/<agent_id>")
def put_agent(workspace: str, agent_id: str, body: AgentProfile) -> dict:
    """Create or update an agent's profile (admins). Presence and load are the agent's own business. Giving a
    new agent a role above agent, or changing an agent's role, needs a step-up (`X-Kefu-Step-Up`)."""
    admin = _staff(workspace, "admin")
    before = store.get_agent(workspace, agent_id) if tokens.ID_RE.match(agent_id) else None
    if (before.role if before else "agent") != body.role:
        _require_step_up(workspace, admin)
    result = _put_agent(workspace, agent_id, body)
    _audit_agent(workspace, agent_id, before, body, by=admin)
    return result


def _put_agent(workspace: str, agent_id: str, body: AgentProfile) -> dict:
    if not tokens.ID_RE.match(agent_id):
        raise InvalidRequest("agent id: letters, digits and _ . : - only, at most 64")
    agent = store.save_agent_profile(Agent(workspace, agent_id, body.name, role=body.role, groups=tuple(body.groups),
                                           languages=tuple(body.languages), max_concurrent=body.maxConcurrent))
    return agent.public()


@app.get("/workspaces/<workspace>/routing")
def get_routing(workspace: str) -> dict:
    _staff(workspace, "supervisor")
    return wiring.router().settings(workspace).to_dict()


@app.put("/workspaces/<workspace>/routing")
def put_routing(workspace: str, body: dict) -> dict:
    """Strategies per workspace and group, fallback and VIP groups, business hours, grace period (admins)."""
    admin = _staff(workspace, "admin")
    try:
        settings = RoutingSettings.from_dict(body)
    except (ValueError, TypeError, AttributeError) as error:
        raise InvalidRequest(f"routing settings: {error}") from None
    if not 5 <= settings.grace_seconds <= 900:
        raise InvalidRequest("graceSeconds must be between 5 and 900")
    store.put_settings(workspace, settings.to_dict())
    _audit(workspace, "settings.routing", by=admin, fields=sorted(body))
    return settings.to_dict()


@app.get("/workspaces/<workspace>/bot")
def get_bot(workspace: str) -> dict:
    """The bot's settings: on or off, its name, thresholds, what it says (supervisors)."""
    _staff(workspace, "supervisor")
    return _bot_settings(workspace).to_dict()


@app.put("/workspaces/<workspace>/bot")
def put_bot(workspace: str, body: dict) -> dict:
    """Change the bot's settings (admins); fields left out keep their defaults. Warm functions see the
    change within seconds (bot.SETTINGS_TTL_S)."""
    admin = _staff(workspace, "admin")
    from kefu.bot import BotSettings

    settings = BotSettings.from_dict(body)
    store.put_bot_settings(workspace, settings.to_dict())
    _audit(workspace, "settings.bot", by=admin, fields=sorted(body))
    return settings.to_dict()


def _bot_settings(workspace: str):
    from kefu.bot import BotSettings

    return BotSettings.stored(store.bot_settings(workspace))  # what the bot itself uses


class SurveySettings(BaseModel):
    nps: StrictBool = Field(default=False, description="ask the Net Promoter question (\"How likely are you to recommend "
                      "us to a friend?\" 0–10) in the survey after a close, besides the 1–5 stars")


@app.get("/workspaces/<workspace>/survey")
def get_survey(workspace: str) -> SurveySettings:
    """What the satisfaction survey after a close asks besides the stars (supervisors). The widget learns it
    from the `closed` frame's survey."""
    _staff(workspace, "supervisor")
    return SurveySettings(**{k: v for k, v in store.survey_settings(workspace).items() if k in SurveySettings.model_fields})


@app.put("/workspaces/<workspace>/survey")
def put_survey(workspace: str, body: SurveySettings) -> SurveySettings:
    """Turn the survey's NPS question on or off (admins); closes from then on ask it."""
    admin = _staff(workspace, "admin")
    store.put_survey_settings(workspace, body.model_dump())
    _audit(workspace, "settings.survey", by=admin, nps=body.nps)
    return body


# ---------------------------------------------------------------- knowledge base

MAX_IMPORT_BYTES = 6 * 1024 * 1024  # API Gateway's payload limit is 10 MB; Lambda's is 6 MB


class AskRequest(BaseModel):
    text: str = Field(max_length=10_000)
    slots: dict = Field(default_factory=dict)


@app.get("/workspaces/<workspace>/kb/articles")
def list_articles(workspace: str, status: Annotated[Literal["active", "retired"] | None, Query()] = None) -> dict:
    """Every article of the workspace (agents), optionally only the active or retired ones."""
    _staff(workspace, "agent")
    return _articles(workspace, status)


def _articles(workspace: str, status: str | None) -> dict:
    articles = sorted(wiring.knowledge_store().list_articles(workspace), key=lambda a: a.id)
    return {"articles": [a.public() for a in articles if status is None or a.status == status]}


@app.get("/workspaces/<workspace>/kb/articles/<article_id>")
def get_article(workspace: str, article_id: str) -> dict:
    _staff(workspace, "agent")
    return _article(workspace, article_id)


def _article(workspace: str, article_id: str) -> dict:
    article = wiring.knowledge_store().get_article(workspace, article_id)
    if article is None:
        raise NotFound("no such article")
    return article.public()


@app.put("/workspaces/<workspace>/kb/articles/<article_id>")
def put_article(workspace: str, article_id: str, body: dict) -> dict:
    """Create or replace an article (supervisors); ratings are kept. The model retrains within seconds."""
    _staff(workspace, "supervisor")
    return _put_article(workspace, article_id, body)


def _put_article(workspace: str, article_id: str, body: dict) -> dict:
    if "id" in body and body["id"] != article_id:
        raise InvalidRequest("the body's id differs from the path's")
    return wiring.knowledge_store().put_article(parse_article(workspace, body, article_id=article_id)).public()


@app.delete("/workspaces/<workspace>/kb/articles/<article_id>")
def delete_article(workspace: str, article_id: str) -> dict:
    who = _staff(workspace, "supervisor")
    result = _delete_article(workspace, article_id)
    _audit(workspace, "kb.delete", by=who, target=article_id)
    return result


def _delete_article(workspace: str, article_id: str) -> dict:
    if not wiring.knowledge_store().delete_article(workspace, article_id):
        raise NotFound("no such article")
    return {"deleted": article_id}


@app.post("/workspaces/<workspace>/kb/import")
def import_articles(workspace: str) -> dict:
    """Bulk import (supervisors): the body is the KB file, JSON Lines, one article per line.
    Valid lines are stored even when others are refused; every refused line is reported."""
    who = _staff(workspace, "supervisor")
    result = _import_articles(workspace)
    _audit(workspace, "kb.import", by=who, imported=result["imported"], refused=result["refused"])
    return result


def _import_articles(workspace: str) -> dict:
    body = app.current_event.decoded_body or ""
    if len(body.encode("utf-8")) > MAX_IMPORT_BYTES:
        raise InvalidRequest(f"an import is at most {MAX_IMPORT_BYTES // (1024 * 1024)} MB; split the file")
    articles, errors = parse_jsonl(workspace, body.splitlines())
    wiring.knowledge_store().put_articles(articles)
    return {"imported": len(articles), "refused": len(errors), "errors": errors[:100],
            "maxLines": MAX_IMPORT_LINES}


@app.post("/workspaces/<workspace>/kb/ask")
def ask(workspace: str, body: AskRequest) -> dict:
    """What the bot would do with this question (agents): decision, confidence, article, answer, reason,
    with the workspace's thresholds."""
    _staff(workspace, "agent")
    return _ask(workspace, body)


def _ask(workspace: str, body: AskRequest) -> dict:
    thresholds = _bot_settings(workspace).thresholds
    return wiring.answerer().answer(workspace, body.text, slots=body.slots, thresholds=thresholds).detail()


@app.get("/workspaces/<workspace>/kb/model")
def model_status(workspace: str) -> dict:
    """The workspace's current answering model: version, when and on what it was trained."""
    _staff(workspace, "agent")
    return {"model": wiring.knowledge_store().model_pointer(workspace)}


@app.post("/workspaces/<workspace>/kb/maintain")
def maintain(workspace: str, body: dict | None = None) -> dict:
    """Run maintenance now (supervisors): retire articles rated unhelpful (unless dryRun) and group the
    questions the bot could not answer into candidate articles. Body: dryRun, minVotes, minHelpfulRate,
    days, similarity, maxCandidates (all optional)."""
    _staff(workspace, "supervisor")
    from kefu.answering.maintenance import Policy

    body = body or {}
    dry_run = body.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise InvalidRequest("dryRun must be true or false")
    return wiring.maintainer().run(workspace, Policy.from_dict(body), dry_run=dry_run)


@app.get("/workspaces/<workspace>/kb/maintenance")
def last_maintenance(workspace: str) -> dict:
    """The last maintenance report (scheduled or on demand), or null (supervisors)."""
    _staff(workspace, "supervisor")
    return {"report": wiring.knowledge_store().last_report(workspace)}


# ---------------------------------------------------------------- tickets

TicketPriority = Literal["low", "normal", "high", "urgent"]
TicketStatusName = Literal["open", "pending", "resolved", "closed"]
OptionalId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=tokens.ID_RE.pattern)]


class TicketCreate(BaseModel):
    subject: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=10_000)
    priority: TicketPriority = "normal"
    customerId: OptionalId | None = None
    customerName: str = Field(default="", max_length=80)
    conversationId: OptionalId | None = None
    groupId: SkillGroup | None = None
    assigneeId: OptionalId | None = None
    contact: str | None = Field(default=None, max_length=200)


class TicketPatch(BaseModel):
    subject: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=10_000)
    priority: TicketPriority | None = None
    groupId: SkillGroup | None = None
    assigneeId: OptionalId | None = None  # null unassigns
    version: int | None = Field(default=None, ge=1, description="the version you read; a newer one is a 409")


class TicketStatusChange(BaseModel):
    status: TicketStatusName
    reason: str = Field(default="", max_length=1000, description="required to reopen a resolved or closed ticket")
    version: int | None = Field(default=None, ge=1)


class TicketComment(BaseModel):
    text: str = Field(min_length=1, max_length=10_000)
    internal: bool = Field(default=False, description="an agents-only note")


class TicketLink(BaseModel):
    conversationId: OptionalId


@app.post("/workspaces/<workspace>/tickets", status_code=201)
def create_ticket(workspace: str, body: TicketCreate) -> dict:
    """Open a ticket (agents): optionally from a conversation (linked, its customer taken over)."""
    return _create_ticket(workspace, body, _member(workspace, staff=True))


def _create_ticket(workspace: str, body: TicketCreate, who: Principal | None) -> dict:
    ticket = wiring.tickets().create(
        workspace, subject=body.subject, description=body.description, priority=body.priority, by=who,
        source="agent" if who else "rest", customer_id=body.customerId, customer_name=body.customerName,
        conversation_id=body.conversationId, group=body.groupId, assignee_id=body.assigneeId, contact=body.contact)
    return ticket.public()


@app.get("/workspaces/<workspace>/tickets")
def list_tickets(
    workspace: str,
    status: Annotated[TicketStatusName | None, Query()] = None,
    priority: Annotated[TicketPriority | None, Query()] = None,
    groupId: Annotated[str | None, Query(max_length=64)] = None,
    assigneeId: Annotated[str | None, Query(max_length=64)] = None,
    customerId: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
) -> dict:
    """Tickets, newest first, filtered; `nextCursor` fetches the next page. Customers see their own."""
    filters = {"status": status, "priority": priority, "groupId": groupId, "assigneeId": assigneeId,
               "customerId": customerId}
    return _list_tickets(workspace, filters, cursor, limit, _member(workspace))


def _list_tickets(workspace: str, filters: dict, cursor: str | None, limit: int, who: Principal | None) -> dict:
    items, next_cursor = wiring.tickets().list(workspace, filters, cursor, limit, who)
    return {"items": [t.public() for t in items], "nextCursor": next_cursor}


@app.get("/workspaces/<workspace>/tickets/<ticket_id>")
def get_ticket(workspace: str, ticket_id: str) -> dict:
    return wiring.tickets().get(workspace, ticket_id, _member(workspace)).public()


@app.patch("/workspaces/<workspace>/tickets/<ticket_id>")
def patch_ticket(workspace: str, ticket_id: str, body: TicketPatch) -> dict:
    """Change subject, description, priority (restarts the SLA clock), group or assignee (agents)."""
    return _patch_ticket(workspace, ticket_id, body, _member(workspace, staff=True))


def _patch_ticket(workspace: str, ticket_id: str, body: TicketPatch, who: Principal | None) -> dict:
    names = {"subject": "subject", "description": "description", "priority": "priority", "groupId": "group",
             "assigneeId": "assignee_id"}
    fields = {names[k]: getattr(body, k) for k in body.model_fields_set if k in names}
    if any(v is None for k, v in fields.items() if k != "assignee_id"):
        raise InvalidRequest("only assigneeId may be null (to unassign)")
    return wiring.tickets().update(workspace, ticket_id, fields, who, body.version).public()


@app.post("/workspaces/<workspace>/tickets/<ticket_id>/status")
def change_ticket_status(workspace: str, ticket_id: str, body: TicketStatusChange) -> dict:
    """open / pending / resolved / closed; reopening needs a reason. Customers may resolve or reopen."""
    who = _member(workspace)
    return wiring.tickets().change_status(workspace, ticket_id, body.status, who, body.reason, body.version).public()


@app.post("/workspaces/<workspace>/tickets/<ticket_id>/comments", status_code=201)
def comment_ticket(workspace: str, ticket_id: str, body: TicketComment) -> dict:
    comment = wiring.tickets().comment(workspace, ticket_id, body.text, _member(workspace), body.internal)
    return comment


@app.get("/workspaces/<workspace>/tickets/<ticket_id>/comments")
def ticket_comments(workspace: str, ticket_id: str) -> dict:
    return {"items": wiring.tickets().comments(workspace, ticket_id, _member(workspace))}


@app.post("/workspaces/<workspace>/tickets/<ticket_id>/conversations")
def link_ticket(workspace: str, ticket_id: str, body: TicketLink) -> dict:
    """Link another conversation to the ticket (agents in it, supervisors)."""
    who = _member(workspace, staff=True)
    return wiring.tickets().link_conversation(workspace, ticket_id, body.conversationId, who).public()


@app.get("/workspaces/<workspace>/ticket-settings")
def get_ticket_settings(workspace: str) -> dict:
    _staff(workspace, "supervisor")
    return wiring.tickets().settings(workspace).to_dict()


@app.put("/workspaces/<workspace>/ticket-settings")
def put_ticket_settings(workspace: str, body: dict) -> dict:
    """SLA seconds per priority, the escalation group and the highest level (admins). New deadlines use them."""
    admin = _staff(workspace, "admin")
    from kefu.tickets import TicketSettings

    settings = TicketSettings.from_dict(body)
    wiring.ticket_store().put_ticket_settings(workspace, settings.to_dict())
    _audit(workspace, "settings.tickets", by=admin, fields=sorted(body))
    return settings.to_dict()


# ---------------------------------------------------------------- API keys (admins)


class ApiKeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[\w.:\- ]+$", description="what the key is for")


@app.post("/workspaces/<workspace>/api-keys", status_code=201)
def create_api_key(workspace: str, body: ApiKeyRequest) -> dict:
    """A new integrator key of this workspace (admins). The value is in this response only: store it."""
    admin = _staff(workspace, "admin")
    created = wiring.api_keys().create(workspace, body.name, admin.id)
    _audit(workspace, "api_key.issue", by=admin, target=created.get("keyId"))
    return created


@app.get("/workspaces/<workspace>/api-keys")
def list_api_keys(workspace: str) -> dict:
    _staff(workspace, "admin")
    return {"items": wiring.api_keys().list(workspace)}


@app.delete("/workspaces/<workspace>/api-keys/<key_id>")
def revoke_api_key(workspace: str, key_id: str) -> dict:
    admin = _staff(workspace, "admin")
    if not wiring.api_keys().revoke(workspace, key_id):
        raise NotFound("no such API key")
    _audit(workspace, "api_key.revoke", by=admin, target=key_id)
    return {"revoked": key_id}


# ---------------------------------------------------------------- webhooks (admins, and integrators for their own)


class WebhookRequest(BaseModel):
    url: str = Field(max_length=2048, description="https:// endpoint that receives the signed deliveries")
    events: list[str] = Field(min_length=1, max_length=20, description='event types, or ["*"]')
    description: str = Field(default="", max_length=200)
    active: bool = True


class WebhookPatch(BaseModel):
    url: str | None = Field(default=None, max_length=2048)
    events: list[str] | None = Field(default=None, min_length=1, max_length=20)
    description: str | None = Field(default=None, max_length=200)
    active: bool | None = None


@app.post("/workspaces/<workspace>/webhooks", status_code=201)
def create_webhook(workspace: str, body: WebhookRequest) -> dict:
    """Subscribe a URL to event types (admins). The signing secret is in this response only."""
    _staff(workspace, "admin")
    return _create_webhook(workspace, body)


@app.get("/workspaces/<workspace>/webhooks")
def list_webhooks(workspace: str) -> dict:
    _staff(workspace, "admin")
    return {"items": [s.public() for s in wiring.webhook_store().list_subscriptions(workspace)]}


@app.get("/workspaces/<workspace>/webhooks/<subscription_id>")
def get_webhook(workspace: str, subscription_id: str) -> dict:
    _staff(workspace, "admin")
    return _subscription(workspace, subscription_id).public()


@app.patch("/workspaces/<workspace>/webhooks/<subscription_id>")
def patch_webhook(workspace: str, subscription_id: str, body: WebhookPatch) -> dict:
    _staff(workspace, "admin")
    return _patch_webhook(workspace, subscription_id, body)


@app.delete("/workspaces/<workspace>/webhooks/<subscription_id>")
def delete_webhook(workspace: str, subscription_id: str) -> dict:
    _staff(workspace, "admin")
    return _delete_webhook(workspace, subscription_id)


@app.post("/workspaces/<workspace>/webhooks/<subscription_id>/rotate-secret")
def rotate_webhook_secret(workspace: str, subscription_id: str) -> dict:
    """A new signing secret (admins), in this response only; the old one stops signing at once."""
    _staff(workspace, "admin")
    return _rotate_webhook(workspace, subscription_id)


@app.get("/workspaces/<workspace>/webhooks/<subscription_id>/deliveries")
def webhook_deliveries(workspace: str, subscription_id: str,
                       limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict:
    """The latest deliveries, newest first: ok, attempts, status code, error (kept 30 days)."""
    _staff(workspace, "admin")
    return _deliveries(workspace, subscription_id, limit)


def _create_webhook(workspace: str, body: WebhookRequest) -> dict:
    from kefu import webhooks

    store_ = wiring.webhook_store()
    if len(store_.list_subscriptions(workspace)) >= webhooks.MAX_SUBSCRIPTIONS:
        raise Conflict(f"a workspace has at most {webhooks.MAX_SUBSCRIPTIONS} webhook subscriptions")
    subscription = webhooks.parse_subscription(workspace, body.model_dump(), allow_private=wiring.webhooks_allow_private())
    store_.put_subscription(subscription)
    _audit(workspace, "webhook.subscribe", target=subscription.id, events=list(subscription.events))
    return {**subscription.public(), "secret": subscription.secret}


def _subscription(workspace: str, subscription_id: str):
    subscription = wiring.webhook_store().get_subscription(workspace, subscription_id)
    if subscription is None:
        raise NotFound("no such webhook subscription")
    return subscription


def _patch_webhook(workspace: str, subscription_id: str, body: WebhookPatch) -> dict:
    from kefu import webhooks

    changes = {k: getattr(body, k) for k in body.model_fields_set}
    if any(v is None for v in changes.values()):
        raise InvalidRequest("url, events, description and active cannot be null")
    updated = webhooks.update_subscription(_subscription(workspace, subscription_id), changes,
                                           allow_private=wiring.webhooks_allow_private())
    wiring.webhook_store().put_subscription(updated)
    _audit(workspace, "webhook.update", target=subscription_id, fields=sorted(changes))
    return updated.public()


def _delete_webhook(workspace: str, subscription_id: str) -> dict:
    if not wiring.webhook_store().delete_subscription(workspace, subscription_id):
        raise NotFound("no such webhook subscription")
    _audit(workspace, "webhook.unsubscribe", target=subscription_id)
    return {"deleted": subscription_id}


def _rotate_webhook(workspace: str, subscription_id: str) -> dict:
    from kefu import webhooks

    rotated = webhooks.rotate_secret(_subscription(workspace, subscription_id))
    wiring.webhook_store().put_subscription(rotated)
    _audit(workspace, "webhook.rotate_secret", target=subscription_id)
    return {**rotated.public(), "secret": rotated.secret}


def _deliveries(workspace: str, subscription_id: str, limit: int) -> dict:
    _subscription(workspace, subscription_id)
    return {"items": [d.public() for d in wiring.webhook_store().deliveries(workspace, subscription_id, limit)]}


# ---------------------------------------------------------------- quick replies (the console's library)


class QuickReply(BaseModel):
    category: str = Field(default="", max_length=40, description="groups replies in the picker")
    title: str = Field(min_length=1, max_length=60, description="what the agent types after /")
    text: str = Field(min_length=1, max_length=4000)


class QuickReplies(BaseModel):
    items: list[QuickReply] = Field(max_length=300)


@app.get("/workspaces/<workspace>/quick-replies")
def get_quick_replies(workspace: str) -> dict:
    """The workspace's quick replies (agents): typed in the console's reply box after "/"."""
    _staff(workspace, "agent")
    return {"items": wiring.channel_store().quick_replies(workspace)}


@app.put("/workspaces/<workspace>/quick-replies")
def put_quick_replies(workspace: str, body: QuickReplies) -> dict:
    """Replace the library (supervisors)."""
    _staff(workspace, "supervisor")
    items = [r.model_dump() for r in body.items]
    wiring.channel_store().put_quick_replies(workspace, items)
    return {"items": items}


# ---------------------------------------------------------------- proactive invitations (the widget)


class ProactiveTrigger(BaseModel):
    """When the widget invites: every condition given must hold (the widget evaluates them on the page)."""

    timeOnPageSeconds: int | None = Field(default=None, ge=0, le=3600, description="after this long on the page")
    urlPattern: str | None = Field(default=None, min_length=1, max_length=200,
                                   description="the page's URL matches this glob (* is any text), e.g. */checkout*")
    minCartValue: float | None = Field(default=None, ge=0, le=1e9, description="the cart is worth at least this "
                                       "(the page tells the widget: data-cart-value or kefuWidget.setCart)")
    returningVisitor: bool | None = Field(default=None, description="true: only visitors seen before; false: only new")
    exitIntent: bool = Field(default=False, description="when the pointer leaves the top of the window")


class ProactiveRule(BaseModel):
    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]
    message: str = Field(min_length=1, max_length=500, description="the invitation, shown as text")
    trigger: ProactiveTrigger
    maxPerDay: int = Field(default=1, ge=1, le=10, description="invitations of this rule per visitor and day")
    maxPerSession: int = Field(default=1, ge=1, le=10, description="per visit (the page's session)")
    enabled: bool = True


class ProactiveRules(BaseModel):
    rules: list[ProactiveRule] = Field(max_length=20, description="evaluated in order; the first that fires wins")


def _check_proactive(body: ProactiveRules) -> None:
    ids = [r.id for r in body.rules]
    if len(ids) != len(set(ids)):
        raise InvalidRequest("rules: every id once")
    for rule in body.rules:
        t = rule.trigger
        if t.timeOnPageSeconds is None and t.urlPattern is None and t.minCartValue is None \
                and t.returningVisitor is None and not t.exitIntent:
            raise InvalidRequest(f"rule {rule.id}: a trigger needs at least one condition")


@app.get("/workspaces/<workspace>/proactive")
def get_proactive(workspace: str) -> dict:
    """The widget's proactive invitations (public: the widget reads them on a shop's page before any
    token). Disabled rules are left out."""
    if not tokens.WORKSPACE_RE.match(workspace) or not store.workspace_exists(workspace):
        raise NotFound("no such workspace")
    return {"rules": [r for r in wiring.channel_store().proactive_rules(workspace) if r.get("enabled", True)]}


@app.put("/workspaces/<workspace>/proactive")
def put_proactive(workspace: str, body: ProactiveRules) -> dict:
    """Replace the proactive rules (admins)."""
    admin = _staff(workspace, "admin")
    _check_proactive(body)
    rules = [r.model_dump() for r in body.rules]
    wiring.channel_store().put_proactive_rules(workspace, rules)
    _audit(workspace, "settings.proactive", by=admin, rules=[r.id for r in body.rules])
    return {"rules": rules}


# ---------------------------------------------------------------- the customer chat's quick replies (kefu.chips)


class ChipText(BaseModel):
    zh: str | None = Field(default=None, min_length=1, max_length=40, description="the wording in Chinese (text)")
    en: str | None = Field(default=None, min_length=1, max_length=40, description="the wording in English (text)")


class Chip(BaseModel):
    id: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")] = Field(
        description="stable: the sent message's meta.quickReply")
    text: ChipText = Field(description="at least one language; the chat shows the visitor's, else the other")


class Chips(BaseModel):
    items: list[Chip] = Field(max_length=6, description="shown in this order; at most 6")


@app.get("/workspaces/<workspace>/customer-quick-replies")
def get_customer_quick_replies(workspace: str) -> dict:
    """The quick replies the customer chat offers (public, like the proactive rules: the chat reads them before
    any token). A quick_reply_wording experiment's variant may reword them for a visitor (the widget applies it)."""
    if not tokens.WORKSPACE_RE.match(workspace) or not store.workspace_exists(workspace):
        raise NotFound("no such workspace")
    return {"items": wiring.channel_store().chat_chips(workspace)}


@app.put("/workspaces/<workspace>/customer-quick-replies")
def put_customer_quick_replies(workspace: str, body: Chips) -> dict:
    """Replace the customer chat's quick replies (admins): at most 6, wording of 1 to 40 characters, plain text."""
    from kefu import chips

    admin = _staff(workspace, "admin")
    items = chips.check_chips([c.model_dump(exclude_none=True) for c in body.items])
    wiring.channel_store().put_chat_chips(workspace, items)
    _audit(workspace, "settings.quick_replies", by=admin, chips=[c["id"] for c in items])
    return {"items": items}


# ---------------------------------------------------------------- channels

PLAIN = {"description": "plain text", "content": {"text/plain": {"schema": {"type": "string"}}}}


class WeChatSettings(BaseModel):
    token: str = Field(pattern=r"^[A-Za-z0-9]{3,32}$", description="the callback token set in WeChat's console")
    appId: str = Field(pattern=r"^[A-Za-z0-9_]{4,64}$")
    appSecret: str = Field(min_length=8, max_length=128, description="write-only")
    apiBase: str | None = Field(default=None, max_length=200,
                                description="the customer-service API's base URL (default api.weixin.qq.com)")


@app.put("/workspaces/<workspace>/channels/wechat")
def put_wechat(workspace: str, body: WeChatSettings) -> dict:
    """Connect a WeChat Official Account (admins): its callback URL is /channels/wechat/{workspace}."""
    admin = _staff(workspace, "admin")
    from kefu import webhooks

    if body.apiBase is not None:
        webhooks.parse_url(body.apiBase, allow_private=wiring.webhooks_allow_private())
    wiring.channel_store().put(workspace, "wechat", body.model_dump())
    _audit(workspace, "settings.channel", by=admin, target="wechat")
    return _wechat_public(workspace, body.model_dump())


@app.get("/workspaces/<workspace>/channels/wechat")
def get_wechat(workspace: str) -> dict:
    _staff(workspace, "admin")
    settings = wiring.channel_store().get(workspace, "wechat")
    if settings is None:
        raise NotFound("WeChat is not connected")
    return _wechat_public(workspace, settings)


def _wechat_public(workspace: str, settings: dict) -> dict:
    return {"appId": settings["appId"], "apiBase": settings.get("apiBase"), "appSecretSet": bool(settings.get("appSecret")),
            "callbackPath": f"/channels/wechat/{workspace}"}


def _wechat_token(workspace: str) -> str:
    settings = wiring.channel_store().get(workspace, "wechat") if tokens.WORKSPACE_RE.match(workspace) else None
    if settings is None:
        raise NotFound("WeChat is not connected to this workspace")
    return settings["token"]


@app.get("/channels/wechat/<workspace>", responses={200: PLAIN})
def wechat_url_verification(workspace: str) -> Response[str]:
    """WeChat's URL verification: echoes `echostr` when the signature matches the workspace's token."""
    from kefu.channels import wechat

    echo = wechat.url_verification(_wechat_token(workspace), app.current_event.query_string_parameters or {})
    return Response(status_code=200, content_type="text/plain", body=echo)


@app.post("/channels/wechat/<workspace>", responses={200: PLAIN})
def wechat_callback(workspace: str) -> Response[str]:
    """A message from a WeChat follower: verified by signature, parsed, put into the customer's
    conversation (the bot's turn or routing included), answered "success" within WeChat's 5 s; replies
    go out through the customer-service API (channel_outbound). Events (subscribe, menu clicks) are
    acknowledged and ignored."""
    from kefu.channels import wechat

    wechat.verify_request(_wechat_token(workspace), app.current_event.query_string_parameters or {})
    inbound = wechat.to_inbound(wechat.parse_message(app.current_event.decoded_body or ""), workspace)
    if inbound is not None:
        _, then = wiring.conversation_service().receive(inbound)
        if then is not None:
            then()  # before answering: Lambda freezes after the response
    return Response(status_code=200, content_type="text/plain", body=wechat.PASSIVE_EMPTY)


class ChannelMessage(BaseModel):
    customerId: OptionalId = Field(description="your customer id: the same id on every channel is one customer")
    customerName: str = Field(default="", max_length=80)
    text: str = Field(min_length=1, max_length=4000)
    messageId: OptionalId = Field(description="your id of this message: resending it stores nothing twice")


@app.post(f"{schema.INTEGRATIONS_PREFIX}/channels/rest/messages", status_code=202)
def rest_channel_message(body: ChannelMessage) -> dict:
    """A customer's message from an app backend (the REST channel): into the customer's open conversation
    or a new one, like a widget message. Replies reach the app through webhooks (message.created)."""
    from kefu.channels import Inbound

    inbound = Inbound(workspace=_integrator(), channel="rest", customer_id=body.customerId, text=body.text.strip(),
                      external_id=body.messageId, customer_name=body.customerName)
    if not inbound.text:
        raise InvalidRequest("text: the message is empty")
    ack, then = wiring.conversation_service().receive(inbound)
    if then is not None:
        then()
    return {"conversationId": ack["conversationId"], "seq": ack["seq"], "createdAt": ack["createdAt"]}


# ---------------------------------------------------------------- integrators (an API key, no user token)

INTEGRATIONS = schema.INTEGRATIONS_PREFIX


class IdentifiedVisitorRequest(BaseModel):
    customerId: OptionalId
    name: str = Field(default="", max_length=80)
    tags: list[Annotated[str, StringConstraints(pattern=tokens.TAG_RE.pattern)]] = Field(default_factory=list,
                                                                                        max_length=10)


@app.post(f"{INTEGRATIONS}/visitor-tokens")
def identified_visitor_token(body: IdentifiedVisitorRequest) -> VisitorToken:
    """A visitor token for a customer the integrator knows (the same customer id on every channel
    continues the same conversations); tags such as `vip` drive routing."""
    workspace = _integrator()
    token = tokens.issue(wiring.signing_key(), kind="visitor", workspace=workspace, subject=body.customerId,
                         name=body.name, tags=body.tags)
    return VisitorToken(token=token, customerId=body.customerId, workspace=workspace, expiresIn=tokens.DEFAULT_TTL_S)


class AgentTokenRequest(BaseModel):
    agentId: OptionalId
    ttlSeconds: int = Field(default=8 * 3600, ge=300, le=12 * 3600, description="how long it signs in (a shift)")
    stepUp: bool = Field(default=False, description="the user has just re-authenticated with your sign-on (e.g. "
                         "OIDC max_age / prompt=login, within the last 5 minutes): also mint a step-up token "
                         "(X-Kefu-Step-Up) for the sensitive actions, valid 5 minutes")


class AgentToken(BaseModel):
    token: str
    agentId: str
    name: str
    role: str
    workspace: str
    expiresIn: int
    stepUpToken: str | None = Field(default=None, description="with stepUp: send it as X-Kefu-Step-Up")
    stepUpExpiresIn: int | None = None


@app.post(f"{INTEGRATIONS}/agent-tokens")
def agent_token(body: AgentTokenRequest) -> AgentToken:
    """Sign an agent in to the console: the integrator's sign-on (SSO, staff directory) asks for a token for
    one of the workspace's agents and opens `agent.html#token=…`. The role stays in the directory (read on
    every request), not in the token."""
    workspace = _integrator()
    agent = store.get_agent(workspace, body.agentId)
    if agent is None:
        raise NotFound(f"no agent {body.agentId!r} in this workspace: create it with PUT .../agents/{{id}} first")
    token = tokens.issue(wiring.signing_key(), kind="agent", workspace=workspace, subject=agent.id, name=agent.name,
                         ttl_s=body.ttlSeconds)
    stepped = None
    if body.stepUp:  # the integrator vouches for a fresh re-authentication (issue 8)
        stepped = step_up.issue(wiring.signing_key(), workspace=workspace, agent_id=agent.id, method="sso")
        _audit(workspace, "step_up.sso", target=agent.id)
    return AgentToken(token=token, agentId=agent.id, name=agent.name, role=agent.role, workspace=workspace,
                      expiresIn=body.ttlSeconds, stepUpToken=stepped,
                      stepUpExpiresIn=step_up.STEP_UP_TTL_S if stepped else None)


@app.post(f"{INTEGRATIONS}/tickets", status_code=201)
def integrator_create_ticket(body: TicketCreate) -> dict:
    return _create_ticket(_integrator(), body, None)


@app.get(f"{INTEGRATIONS}/tickets")
def integrator_list_tickets(
    status: Annotated[TicketStatusName | None, Query()] = None,
    priority: Annotated[TicketPriority | None, Query()] = None,
    groupId: Annotated[str | None, Query(max_length=64)] = None,
    assigneeId: Annotated[str | None, Query(max_length=64)] = None,
    customerId: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
) -> dict:
    filters = {"status": status, "priority": priority, "groupId": groupId, "assigneeId": assigneeId,
               "customerId": customerId}
    return _list_tickets(_integrator(), filters, cursor, limit, None)


@app.get(f"{INTEGRATIONS}/tickets/<ticket_id>")
def integrator_get_ticket(ticket_id: str) -> dict:
    return wiring.tickets().get(_integrator(), ticket_id).public()


@app.patch(f"{INTEGRATIONS}/tickets/<ticket_id>")
def integrator_patch_ticket(ticket_id: str, body: TicketPatch) -> dict:
    return _patch_ticket(_integrator(), ticket_id, body, None)


@app.post(f"{INTEGRATIONS}/tickets/<ticket_id>/status")
def integrator_ticket_status(ticket_id: str, body: TicketStatusChange) -> dict:
    return wiring.tickets().change_status(_integrator(), ticket_id, body.status, None, body.reason,
                                          body.version).public()


@app.post(f"{INTEGRATIONS}/tickets/<ticket_id>/comments", status_code=201)
def integrator_comment(ticket_id: str, body: TicketComment) -> dict:
    comment = wiring.tickets().comment(_integrator(), ticket_id, body.text, None, body.internal)
    return comment


@app.get(f"{INTEGRATIONS}/tickets/<ticket_id>/comments")
def integrator_comments(ticket_id: str) -> dict:
    return {"items": wiring.tickets().comments(_integrator(), ticket_id, None)}


@app.post(f"{INTEGRATIONS}/webhooks", status_code=201)
def integrator_create_webhook(body: WebhookRequest) -> dict:
    return _create_webhook(_integrator(), body)


@app.get(f"{INTEGRATIONS}/webhooks")
def integrator_webhooks() -> dict:
    return {"items": [s.public() for s in wiring.webhook_store().list_subscriptions(_integrator())]}


@app.patch(f"{INTEGRATIONS}/webhooks/<subscription_id>")
def integrator_patch_webhook(subscription_id: str, body: WebhookPatch) -> dict:
    return _patch_webhook(_integrator(), subscription_id, body)


@app.delete(f"{INTEGRATIONS}/webhooks/<subscription_id>")
def integrator_delete_webhook(subscription_id: str) -> dict:
    return _delete_webhook(_integrator(), subscription_id)


@app.get(f"{INTEGRATIONS}/webhooks/<subscription_id>/deliveries")
def integrator_webhook_deliveries(subscription_id: str, limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict:
    return _deliveries(_integrator(), subscription_id, limit)


@app.get(f"{INTEGRATIONS}/agents")
def integrator_agents() -> dict:
    """Every agent with presence and load."""
    return _agents(_integrator())


@app.put(f"{INTEGRATIONS}/agents/<agent_id>")
def integrator_put_agent(agent_id: str, body: AgentProfile) -> dict:
    """Create or update an agent's profile (an HR or SSO sync)."""
    workspace = _integrator()
    before = store.get_agent(workspace, agent_id) if tokens.ID_RE.match(agent_id) else None
    result = _put_agent(workspace, agent_id, body)
    _audit_agent(workspace, agent_id, before, body)
    return result


@app.get(f"{INTEGRATIONS}/groups")
def integrator_groups() -> dict:
    """The skill groups agents belong to, with how many agents each has and how many are online."""
    groups: dict[str, dict] = {}
    for agent in store.list_agents(_integrator()):
        for group in agent.groups:
            entry = groups.setdefault(group, {"group": group, "agents": 0, "online": 0})
            entry["agents"] += 1
            entry["online"] += agent.presence == "online"
    return {"items": sorted(groups.values(), key=lambda g: g["group"])}


@app.get(f"{INTEGRATIONS}/kb/articles")
def integrator_articles(status: Annotated[Literal["active", "retired"] | None, Query()] = None) -> dict:
    return _articles(_integrator(), status)


@app.get(f"{INTEGRATIONS}/kb/articles/<article_id>")
def integrator_article(article_id: str) -> dict:
    return _article(_integrator(), article_id)


@app.put(f"{INTEGRATIONS}/kb/articles/<article_id>")
def integrator_put_article(article_id: str, body: dict) -> dict:
    return _put_article(_integrator(), article_id, body)


@app.delete(f"{INTEGRATIONS}/kb/articles/<article_id>")
def integrator_delete_article(article_id: str) -> dict:
    workspace = _integrator()
    result = _delete_article(workspace, article_id)
    _audit(workspace, "kb.delete", target=article_id)
    return result


@app.post(f"{INTEGRATIONS}/kb/import")
def integrator_import() -> dict:
    workspace = _integrator()
    result = _import_articles(workspace)
    _audit(workspace, "kb.import", imported=result["imported"], refused=result["refused"])
    return result


@app.post(f"{INTEGRATIONS}/kb/ask")
def integrator_ask(body: AskRequest) -> dict:
    return _ask(_integrator(), body)


@app.get(f"{INTEGRATIONS}/conversations")
def integrator_conversations(
    status: Annotated[Literal["bot", "open", "queued", "assigned", "closed"] | None, Query()] = None,
    channel: Annotated[Literal["web", "rest", "wechat"] | None, Query()] = None,
    customerId: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
) -> dict:
    """Conversations, newest first, filtered by status, channel or customer; `nextCursor` continues."""
    items, next_cursor = store.list_conversations(_integrator(), {"status": status, "channel": channel,
                                                                  "customerId": customerId}, cursor, limit)
    return {"items": [_conversation_summary(c) for c in items], "nextCursor": next_cursor}


class IntegratorClose(BaseModel):
    resolved: bool = Field(default=True, description="false opens a ticket for what the chat did not finish")


@app.post(f"{INTEGRATIONS}/conversations/<conversation_id>/close")
def integrator_close(conversation_id: str, body: IntegratorClose) -> dict:
    """Close a conversation (e.g. the order was settled elsewhere); its participants get `closed`."""
    from kefu import frames

    who = Principal(_integrator(), "agent", "integration", "Integration", agent_role="admin")
    if not tokens.ID_RE.match(conversation_id):
        raise NotFound("no such conversation")
    frame = frames.CloseFrame(action="close", conversationId=conversation_id, resolved=body.resolved)
    return wiring.router().close(who, frame)


@app.get(f"{INTEGRATIONS}/conversations/<conversation_id>")
def integrator_conversation(conversation_id: str) -> dict:
    workspace = _integrator()
    conversation = store.get_conversation(workspace, conversation_id)
    if conversation is None:
        raise NotFound("no such conversation")
    return _conversation_summary(conversation)


@app.get(f"{INTEGRATIONS}/conversations/<conversation_id>/messages")
def integrator_messages(
    conversation_id: str,
    afterSeq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict:
    """A page of the messages after afterSeq, oldest first; `nextAfterSeq` continues (null: no more)."""
    workspace = _integrator()
    if store.get_conversation(workspace, conversation_id) is None:
        raise NotFound("no such conversation")
    return _messages_page(workspace, conversation_id, afterSeq, limit)


@app.get(f"{INTEGRATIONS}/customers/<customer_id>")
def integrator_customer(customer_id: str) -> dict:
    """A customer's profile across channels: their conversations (newest first, with the channel) and
    tickets."""
    workspace = _integrator()
    result = _customer_profile(workspace, customer_id)
    _audit(workspace, "customer.history_view", target=_customer_ref(workspace, customer_id))
    return result


@app.get("/workspaces/<workspace>/conversations")
def workspace_conversations(
    workspace: str,
    status: Annotated[Literal["bot", "open", "queued", "assigned", "closed"] | None, Query()] = None,
    channel: Annotated[Literal["web", "rest", "wechat"] | None, Query()] = None,
    customerId: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
) -> dict:
    """The workspace's conversations for supervisors and admins (the console's "all" tab), newest first,
    filtered by status, channel or customer; `nextCursor` continues. Filtered by customer it is that customer's
    history: it needs a step-up (`X-Kefu-Step-Up`) and is audited."""
    who = _staff(workspace, "supervisor")
    if customerId is not None:
        _require_step_up(workspace, who)
        _audit(workspace, "customer.history_view", by=who, target=_customer_ref(workspace, customerId))
    items, next_cursor = store.list_conversations(workspace, {"status": status, "channel": channel,
                                                              "customerId": customerId}, cursor, limit)
    return {"items": [_conversation_summary(c) for c in items], "nextCursor": next_cursor}


@app.get("/workspaces/<workspace>/metrics/hourly")
def hourly_metrics(
    workspace: str,
    start: Annotated[str | None, Query(alias="from", pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}$")] = None,
    end: Annotated[str | None, Query(alias="to", pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}$")] = None,
) -> dict:
    """Hourly counters for supervisors and admins (the console's dashboard): conversations opened, messages
    by sender role, the bot's decisions, queue abandonments. `from` / `to`: UTC hours (2026-11-21T09), both
    included; the last 24 hours by default, at most 31 days."""
    from datetime import datetime, timedelta, timezone

    from kefu import metrics

    _staff(workspace, "supervisor")
    try:  # the pattern lets 2026-13-45T99 through: strptime says what is wrong
        last = end or datetime.now(timezone.utc).strftime(metrics.HOUR_FORMAT)
        first = start or (datetime.strptime(last, metrics.HOUR_FORMAT) - timedelta(hours=23)).strftime(
            metrics.HOUR_FORMAT)
        hours = metrics.hours_between(first, last)
    except ValueError as error:
        raise InvalidRequest(f"from/to: {error}") from None
    counters = wiring.metrics_store().hourly(workspace, hours[0], hours[-1])
    return {"from": hours[0], "to": hours[-1], "hours": hours, "series": metrics.hourly_series(counters, hours)}


@app.get("/workspaces/<workspace>/metrics")
def workspace_metrics(
    workspace: str,
    granularity: Annotated[Literal["hour", "day"], Query()] = "day",
    start: Annotated[str | None, Query(alias="from", pattern=r"^\d{4}-\d{2}-\d{2}(T\d{2})?$")] = None,
    end: Annotated[str | None, Query(alias="to", pattern=r"^\d{4}-\d{2}-\d{2}(T\d{2})?$")] = None,
    group: Annotated[str | None, Query(max_length=64)] = None,
    agent: Annotated[str | None, Query(max_length=64)] = None,
    channel: Annotated[Literal["web", "rest", "wechat"] | None, Query()] = None,
) -> dict:
    """Service metrics for supervisors and admins, per hour or day (UTC) of a range (`from` / `to`: days
    2026-11-21 or hours 2026-11-21T09; default the last 7 days / 24 hours), for the workspace or one group,
    agent or channel: volume, bot containment and handoff rates, resolution and first-contact resolution,
    abandonment, transfers, wait (average, p50 / p90), average handle time, CSAT average and distribution,
    NPS (% promoters 9–10 minus % detractors 0–6, -100..100) with its answers and distribution when asked
    (PUT /workspaces/{ws}/survey). `total` is computed from the summed counters of the range."""
    from datetime import datetime, timedelta, timezone

    from kefu import analytics

    _staff(workspace, "supervisor")
    chosen = [d for d in (f"group:{group}" if group else None, f"agent:{agent}" if agent else None,
                          f"channel:{channel}" if channel else None) if d]
    if len(chosen) > 1:
        raise InvalidRequest("group, agent, channel: one of them at most")
    dimension = chosen[0] if chosen else "all"
    key, fmt, step, count = (("H", "%Y-%m-%dT%H", timedelta(hours=1), 24) if granularity == "hour"
                             else ("D", "%Y-%m-%d", timedelta(days=1), 7))
    try:
        last = end or datetime.now(timezone.utc).strftime(fmt)
        first = start or (datetime.strptime(last, fmt) - step * (count - 1)).strftime(fmt)
        periods = analytics.period_range(key, first, last)
    except ValueError as error:
        raise InvalidRequest(f"from/to: {error} (granularity {granularity}: {fmt.replace('%', '')})") from None
    found = wiring.analytics_store().read(workspace, key, periods[0], periods[-1], dimension)
    by_period = {period: counters for (period, _), counters in found.items()}
    return {"granularity": granularity, "dimension": dimension, "from": periods[0], "to": periods[-1],
            **analytics.report(by_period, periods)}


@app.get("/workspaces/<workspace>/customers/<customer_id>")
def customer_profile(workspace: str, customer_id: str) -> dict:
    """The customer's profile for the console (agents): name, tags, channels, previous conversations and
    tickets. The history beyond the current conversation: it needs a step-up (`X-Kefu-Step-Up`) and is audited."""
    agent = _staff(workspace, "agent")
    _require_step_up(workspace, agent)
    result = _customer_profile(workspace, customer_id)
    _audit(workspace, "customer.history_view", by=agent, target=_customer_ref(workspace, customer_id))
    return result


def _customer_profile(workspace: str, customer_id: str) -> dict:
    conversations = store.conversations_of_customer(workspace, customer_id, 50)
    tickets_, _ = wiring.tickets().list(workspace, {"customerId": customer_id}, None, 50)
    if not conversations and not tickets_:
        raise NotFound("no such customer")
    latest = conversations[0] if conversations else None
    return {
        "customerId": customer_id,
        "name": latest.customer_name if latest else tickets_[0].customer_name,
        "tags": list(latest.customer_tags) if latest else [],
        "channels": sorted({c.channel for c in conversations}),
        "conversations": [_conversation_summary(c) for c in conversations],
        "tickets": [{k: t.public()[k] for k in ("ticketId", "subject", "status", "priority", "createdAt")}
                    for t in tickets_],
    }


# ---------------------------------------------------------------- data protection (issue 8, kefu.privacy)


class PrivacySettingsBody(BaseModel):
    retentionDays: int = Field(default=365, ge=1, le=1830, description="conversations and their messages, "
                               "votes and ratings expire this many days after they were written (a conversation "
                               "after its last message or its close); new items only. Tickets expire this many "
                               "days after they are resolved or closed (never while open), business events after "
                               "they are stored (at most 400 days)")
    anonymous: StrictBool = Field(default=False, description="anonymous consultation: new conversations store no "
                                  "name or tags of the customer (only the random customer id)")
    maskPii: StrictBool = Field(default=False, description="customers' messages in new conversations are stored "
                                "with personal data masked (mobile and international phone numbers, ID and bank card "
                                "numbers, e-mail addresses: 138****5678); the originals are sealed with the PII key")
    piiRevealRole: Literal["agent", "supervisor", "admin"] = Field(
        default="supervisor", description="who may see a masked message's original (GET /conversations/{id}/"
        "messages/{seq}/original, audited): this role and above; \"agent\": the conversation's own agent too")


@app.get("/workspaces/<workspace>/privacy")
def get_privacy(workspace: str) -> PrivacySettingsBody:
    """The workspace's data protection settings: retention and anonymous consultation (admins)."""
    from kefu.privacy import PrivacySettings

    _staff(workspace, "admin")
    return PrivacySettingsBody(**PrivacySettings.parse(store.privacy_settings(workspace)).public())


@app.put("/workspaces/<workspace>/privacy")
def put_privacy(workspace: str, body: PrivacySettingsBody) -> PrivacySettingsBody:
    """Change retention and anonymous consultation (admins); conversations opened from then on follow them."""
    from kefu.privacy import PrivacySettings

    admin = _staff(workspace, "admin")
    settings = PrivacySettings.validate(body.model_dump())
    store.put_privacy_settings(workspace, settings.public())
    _audit(workspace, "settings.retention", by=admin, **settings.public())
    return PrivacySettingsBody(**settings.public())


@app.get("/workspaces/<workspace>/customers/<customer_id>/export")
def export_customer(workspace: str, customer_id: str) -> dict:
    """Everything kefu holds about one customer of this workspace, as JSON (admins; PIPL / GDPR access and
    portability): profile, conversations with messages, votes and CSAT, attachments (with download links valid a
    few minutes), tickets with comments, business events, experiment exposures and conversions."""
    admin = _staff(workspace, "admin")
    _require_step_up(workspace, admin)  # issue 8: exporting a customer's data needs a fresh step-up
    found = _privacy().export(workspace, customer_id) if tokens.ID_RE.match(customer_id) else None
    if found is None:
        raise NotFound("no such customer")
    _audit(workspace, "customer.export", _customer_ref(workspace, customer_id), by=admin,
           conversations=len(found["conversations"]), tickets=len(found["tickets"]))
    return found


@app.delete("/workspaces/<workspace>/customers/<customer_id>")
def delete_customer(workspace: str, customer_id: str) -> dict:
    """Delete everything kefu holds about one customer of this workspace (admins; PIPL / GDPR erasure). Open
    conversations are closed first (the agent is told) and the customer's sockets dropped. Idempotent: a customer
    with nothing left gives zero counts. If a part fails, 409 `deletion_incomplete` names what remains; send the
    same request again. The customer's tokens issued until the erasure are refused from then on (401), at the
    WebSocket's $connect and here; a token issued afterwards is a new start."""
    admin = _staff(workspace, "admin")
    _require_step_up(workspace, admin)  # erasing a customer cannot be undone: a fresh verification first
    if not tokens.ID_RE.match(customer_id):
        raise NotFound("no such customer")
    from kefu.privacy import DeletionIncomplete

    target = _customer_ref(workspace, customer_id)
    try:
        report = _privacy().delete(workspace, customer_id)
    except DeletionIncomplete as incomplete:
        _audit(workspace, "customer.delete", target, by=admin, complete=False,
               remaining=incomplete.report["remaining"], **incomplete.report["deleted"])
        return _error(409, "deletion_incomplete", "some of the customer's data could not be deleted yet; what "
                      "remains is listed: send the same request again", incomplete.report)
    _audit(workspace, "customer.delete", target, by=admin, complete=True, **report["deleted"])
    return report


def _customer_ref(workspace: str, customer_id: str) -> str:
    """How the audit log names a customer: a digest (an auditor holding the id can check it), never the id,
    which erasure must not leave behind."""
    from kefu.privacy import customer_digest

    return "customer:" + customer_digest(workspace, customer_id)


@lru_cache(maxsize=1)
def _privacy():
    from kefu import frames
    from kefu.adapters.customer_data import CustomerData
    from kefu.privacy import PrivacyService

    data = CustomerData()

    def close(workspace: str, conversation_id: str) -> None:
        who = Principal(workspace, "agent", "privacy", "Data protection", agent_role="admin")
        try:
            wiring.router().close(who, frames.CloseFrame(action="close", conversationId=conversation_id, resolved=True))
        except ConversationClosed:
            pass

    def link(key: str) -> str | None:
        stored = wiring.attachment_store().head(key)
        if stored is None:
            return None
        try:
            kind = attachments.file_type(stored.content_type)
        except attachments.AttachmentError:
            return None
        name = attachments.safe_name(key.rsplit("/", 1)[-1], kind.content_type)
        return wiring.attachment_store().download_url(key, kind.content_type,
                                                      attachments.disposition(name, kind.content_type),
                                                      attachments.DOWNLOAD_TTL_S)

    def unmask(workspace: str, conversation_id: str, text: str, record: dict) -> str:
        from kefu import pii

        return pii.reveal(wiring.pii_vault(), workspace, conversation_id, text, record)

    return PrivacyService(data, close=close, disconnect=data.disconnect, knowledge=wiring.knowledge_store(), link=link,
                          unmask=unmask, revoke=store.record_erasure)


def _conversation_summary(conversation) -> dict:
    return {
        "conversationId": conversation.id, "status": conversation.status, "channel": conversation.channel,
        "customer": conversation.customer(), "agent": ({"id": conversation.agent_id, "name": conversation.agent_name}
                                                       if conversation.agent_id else None),
        "group": conversation.group, "openedAt": conversation.opened_at, "closedAt": conversation.closed_at,
        "closeReason": conversation.close_reason, "lastSeq": conversation.last_seq, "csat": conversation.csat,
    }


def _messages_page(workspace: str, conversation_id: str, after_seq: int, limit: int) -> dict:
    page = store.messages_after(workspace, conversation_id, after_seq, limit + 1)
    items = [m.public() for m in page[:limit]]
    return {"items": items, "nextAfterSeq": items[-1]["seq"] if len(page) > limit else None}


def _integrator() -> str:
    """The workspace of the caller's API key (API Gateway has checked the key against the usage plan)."""
    key_id = (app.current_event.request_context.identity.api_key_id or "").strip()
    workspace = wiring.api_keys().workspace_of(key_id) if key_id else None
    if workspace is None:
        raise Unauthorized("send an integrator API key (x-api-key) of a workspace")
    return workspace


def _member(workspace: str, *, staff: bool = False) -> Principal:
    """The caller as a member of this workspace: an agent (role from the directory) or, unless `staff`,
    a customer with a visitor token of this workspace."""
    who = _caller()
    if who.workspace != workspace:
        raise NotFound("no such workspace")
    if who.role == "customer":
        if staff:
            raise Forbidden("this is for agents")
        return _known_workspace(who)
    agent = _staff(workspace, "agent")
    return Principal(workspace, "agent", agent.id, agent.name, agent_role=agent.role)


def _staff(workspace: str, at_least: str):
    """The calling agent of this workspace, if their role (from the directory, not the token) suffices."""
    who = _caller()
    if who.workspace != workspace:
        raise NotFound("no such workspace")  # another workspace's caller: its ids are unknown, never forbidden
    if who.role != "agent":
        raise Forbidden("this is for agents")
    agent = store.get_agent(workspace, who.id)
    if agent is None:
        raise Unauthorized("unknown agent")
    if RANK.get(agent.role, -1) < RANK[at_least]:
        raise Forbidden(f"this needs the {at_least} role")
    return agent


def _caller():
    header = app.current_event.headers.get("Authorization") or app.current_event.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("send Authorization: Bearer <token>")
    who = tokens.verify(wiring.signing_key(), token)
    if who.role == "customer":  # a token of a customer erased since it was issued (kefu.privacy) opens nothing
        from kefu.privacy import token_revoked

        if token_revoked(who.issued_at, store.erased_at(who.workspace, who.id)):
            raise Unauthorized("token revoked")
    return who


# ---------------------------------------------------------------- A/B experiments and conversions (issue 7)

ExperimentKind = Literal["greeting", "proactive_delay", "routing_mode", "quick_reply_wording"]
EventType = Literal["order_placed", "payment_succeeded"]
ExperimentId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=tokens.ID_RE.pattern)]


class ExperimentVariantIn(BaseModel):
    id: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_.\-]{1,32}$")
    weight: int = Field(ge=1, le=experiments.MAX_TOTAL_WEIGHT, description="traffic share; weights sum to at "
                        f"most {experiments.MAX_TOTAL_WEIGHT}")
    value: Any = Field(default=None, description="what the variant shows: greeting text; proactive_delay seconds "
                       "(0-3600); routing_mode bot_first | human_first; quick_reply_wording a text or a list of texts")


class ExperimentCreate(BaseModel):
    name: str = Field(min_length=1, max_length=120)
    kind: ExperimentKind
    variants: list[ExperimentVariantIn] = Field(min_length=experiments.MIN_VARIANTS,
                                                max_length=experiments.MAX_VARIANTS,
                                                description="the first variant is the control")
    attributionWindowSeconds: int = Field(default=experiments.DEFAULT_WINDOW_S, ge=60, le=experiments.MAX_WINDOW_S)


class ExperimentStop(BaseModel):
    winner: str | None = Field(default=None, min_length=1, max_length=32,
                               description="the variant to roll out to everyone")


class BusinessEventIn(BaseModel):
    eventId: ExperimentId = Field(description="your id of the event: a resent event (same id) counts once")
    type: EventType
    value: float = Field(default=0, ge=0, le=1e12, allow_inf_nan=False)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    at: str | None = Field(default=None, max_length=40, description="ISO 8601 instant (default: now)")


class IntegratorBusinessEvent(BusinessEventIn):
    customerId: ExperimentId


@lru_cache(maxsize=1)
def _experiment_store():
    from kefu.adapters.experiment_store import ExperimentStore

    return ExperimentStore()


@app.post("/workspaces/<workspace>/experiments", status_code=201)
def create_experiment(workspace: str, body: ExperimentCreate) -> dict:
    """Create a draft experiment (admins). Start it to assign visitors."""
    admin = _staff(workspace, "admin")
    experiment = experiments.new_experiment(workspace, body.name, body.kind,
                                            [v.model_dump() for v in body.variants], body.attributionWindowSeconds)
    _experiment_store().create(experiment)
    _audit(workspace, "experiment.create", by=admin, target=experiment.id, kind=experiment.kind)
    return experiment.public()


@app.get("/workspaces/<workspace>/experiments")
def list_experiments(workspace: str) -> dict:
    """The workspace's experiments, oldest first (supervisors and admins)."""
    _staff(workspace, "supervisor")
    return {"items": [e.public() for e in _experiment_store().list(workspace)]}


@app.get("/workspaces/<workspace>/experiments/assignments")
def experiment_assignments(
    workspace: str,
    expose: Annotated[str | None, Query(max_length=400, pattern=r"^[A-Za-z0-9_.:\-]{1,64}(,[A-Za-z0-9_.:\-]{1,64}){0,4}$",
                                        description="up to 5 experiment ids, comma-separated: their variants took "
                                                    "effect for this visitor (exposure)")] = None,
) -> dict:
    """The widget (a visitor token of this workspace): this visitor's variant of every running experiment
    (and the winner of every rolled-out one), the same on every call and channel. Learning the variants is no
    exposure: the widget asks again with `expose=<experimentId>` when a variant takes effect (the chat shows the
    greeting, the clock of a proactive invitation starts); each exposure is logged and counted once per
    experiment and visitor, with the variant assigned here (`exposed`: true the first time only). Marks the
    visitor as seen (the chatted / not-chatted report)."""
    who = _visitor(workspace)
    store_ = _experiment_store()
    now = now_iso()
    wanted = set(expose.split(",")) if expose else set()
    keep_days = wiring.retention_days(workspace)  # the visitor's markers expire with the workspace's retention
    if not wanted:
        store_.mark_seen(workspace, who.id, now, retention_days=keep_days)
    out = []
    for experiment in store_.list(workspace):
        variant = experiments.assign(experiment, who.id)
        if variant is None:
            continue
        running = experiment.status == "running"
        row = {"experimentId": experiment.id, "kind": experiment.kind, "variantId": variant.id,
               "value": variant.value, "rolledOut": experiment.winner is not None, "running": running}
        if experiment.id in wanted:
            row["exposed"] = running and store_.expose(experiment, who.id, variant.id, now, retention_days=keep_days)
        out.append(row)
    return {"visitorKey": who.id, "assignments": out}


@app.get("/workspaces/<workspace>/experiments/<experiment_id>")
def get_experiment(workspace: str, experiment_id: str) -> dict:
    """An experiment with its results per variant (supervisors and admins)."""
    _staff(workspace, "supervisor")
    experiment = _experiment(workspace, experiment_id)
    counts = _experiment_store().counts(workspace, experiment.id)
    return {**experiment.public(), "results": experiments.results(experiment, counts)}


@app.post("/workspaces/<workspace>/experiments/<experiment_id>/start")
def start_experiment(workspace: str, experiment_id: str) -> dict:
    """Start a draft experiment (admins): visitors are assigned from now on."""
    admin = _staff(workspace, "admin")
    experiment = _experiment(workspace, experiment_id)
    started = experiments.start(experiment)
    if not _experiment_store().replace(started, experiment.status):
        raise Conflict("the experiment changed meanwhile; read it again")
    _audit(workspace, "experiment.start", by=admin, target=experiment.id)
    return started.public()


@app.post("/workspaces/<workspace>/experiments/<experiment_id>/stop")
def stop_experiment(workspace: str, experiment_id: str, body: ExperimentStop | None = None) -> dict:
    """Stop a running experiment (admins); with `winner`, roll that variant out to everyone. Without a
    winner the product's defaults apply again; a winner may still be given later."""
    admin = _staff(workspace, "admin")
    experiment = _experiment(workspace, experiment_id)
    stopped = experiments.stop(experiment, body.winner if body else None)
    if not _experiment_store().replace(stopped, experiment.status):
        raise Conflict("the experiment changed meanwhile; read it again")
    winner = body.winner if body else None
    _audit(workspace, "experiment.roll_out" if winner else "experiment.stop", by=admin, target=experiment.id,
           winner=winner)
    return stopped.public()


@app.post(f"{schema.INTEGRATIONS_PREFIX}/events")
def integrator_event(body: IntegratorBusinessEvent) -> dict:
    """A business event of a customer (an order, a payment), reported by the integrator's backend:
    credited to the customer's latest conversation within 24 h before it and counted as a conversion in
    the experiments the customer was exposed to. Idempotent on eventId."""
    return _business_event(_integrator(), body.customerId, body)


@app.post("/workspaces/<workspace>/events")
def widget_event(workspace: str, body: BusinessEventIn) -> dict:
    """A business event reported by the widget (a visitor token; the customer is the token's subject).
    Idempotent on eventId."""
    return _business_event(workspace, _visitor(workspace).id, body)


@app.get("/workspaces/<workspace>/conversions")
def conversions_report(workspace: str) -> dict:
    """Conversion of the visitors the widget has seen: those who chatted (at least one conversation) vs.
    those who did not (supervisors and admins). Observational, not causal; at most 10,000 visitors each."""
    _staff(workspace, "supervisor")
    store_ = _experiment_store()
    seen, converted = store_.visitors(workspace, "SEEN"), store_.visitors(workspace, "BUY")
    chatted: set[str] = set()
    cursor = None
    for _ in range(100):
        page, cursor = store.list_conversations(workspace, {}, cursor, 100)
        chatted.update(c.customer_id for c in page)
        if not cursor:
            break
    return experiments.chat_conversion(seen, chatted, converted)


def _business_event(workspace: str, customer_id: str, body: BusinessEventIn) -> dict:
    try:
        at = experiments.iso(experiments.parse_time(body.at)) if body.at else now_iso()
    except (ValueError, OverflowError):
        raise InvalidRequest("at: an ISO 8601 instant, like 2026-11-21T09:30:00Z") from None
    conversations = [(c.id, c.opened_at) for c in store.conversations_of_customer(workspace, customer_id, 20)]
    credited = experiments.credited_conversation(at, conversations)
    event = {"eventId": body.eventId, "type": body.type, "value": round(body.value, 6), "currency": body.currency,
             "at": at, "customerId": customer_id, "conversationId": credited}
    store_ = _experiment_store()
    keep_days = wiring.retention_days(workspace)
    if not store_.record_event(workspace, customer_id, event, retention_days=keep_days):
        return {"eventId": body.eventId, "duplicate": True, "conversationId": None, "experiments": []}
    counted = store_.record_conversions(store_.list(workspace), customer_id, body.eventId, at, retention_days=keep_days)
    return {"eventId": body.eventId, "duplicate": False, "conversationId": credited, "experiments": counted}


def _experiment(workspace: str, experiment_id: str):
    experiment = (_experiment_store().get(workspace, experiment_id) if tokens.ID_RE.match(experiment_id)
                  else None)
    if experiment is None:
        raise NotFound("no such experiment")
    return experiment


def _visitor(workspace: str) -> Principal:
    """The calling visitor (a customer token of this workspace)."""
    who = _caller()
    if who.workspace != workspace:
        raise NotFound("no such workspace")
    if who.role != "customer":
        raise Forbidden("this is for the widget (a visitor token)")
    return _known_workspace(who)


def _known_workspace(who: Principal) -> Principal:
    """A visitor token is no better than its workspace: one that does not exist (deleted, or never made) opens
    nothing, as at $connect (ws_authorizer). Agents' tokens are checked against the directory (_staff)."""
    if not store.workspace_exists(who.workspace):
        raise Unauthorized("unknown workspace")
    return who

# ---------------------------------------------------------------- audit log and step-up verification (issue 8)


def _source() -> audit.Source:
    """Where the request came from: API Gateway's source address and the User-Agent header."""
    identity = app.current_event.request_context.identity
    return audit.Source(ip=identity.source_ip or None, user_agent=(identity.user_agent or None))


def _audit(workspace: str, action: str, target: str | None = None, *, by: Agent | None = None,
           outcome: str = "ok", **details) -> None:
    """Append an audit entry for this request: the actor is `by` (the agent _staff returned) or, without it,
    the caller's integrator key (on /integrations routes) or bearer token; the source address and user agent
    come from the request. `details`: ids, counts, field names; never message text or personal data."""
    if by is not None:
        actor = audit.agent(by.id, by.role)
    else:
        key_id = (app.current_event.request_context.identity.api_key_id or "").strip()
        if key_id and app.current_event.path.startswith(INTEGRATIONS):
            actor = audit.integration(key_id)
        else:
            actor = audit.agent(_caller().id)
    audit.record(workspace, action, actor=actor, target=target, outcome=outcome, source=_source(), details=details)


def _require_step_up(workspace: str, agent: Agent) -> step_up.StepUp:
    """403 step_up_required unless the request carries a fresh step-up token (X-Kefu-Step-Up) of this agent of
    this workspace. Call it after _staff, on every route that shows or does something sensitive."""
    headers = app.current_event.headers
    token = headers.get(step_up.HEADER) or headers.get(step_up.HEADER.lower())
    return step_up.verify(wiring.signing_key(), token, workspace=workspace, agent_id=agent.id)


def _audit_agent(workspace: str, agent_id: str, before: Agent | None, body: AgentProfile,
                 by: Agent | None = None) -> None:
    if before is None:
        _audit(workspace, "agent.create", agent_id, by=by, role=body.role)
    elif before.role != body.role:
        _audit(workspace, "agent.role_change", agent_id, by=by, role=body.role, previousRole=before.role)
    else:
        _audit(workspace, "agent.update", agent_id, by=by, role=body.role)


class TotpEnrolment(BaseModel):
    otpauthUri: str = Field(description="otpauth://totp/...: add it to an authenticator app (as text or a QR "
                            "code); shown this once")
    secret: str = Field(description="the same secret (base32), for typing in by hand; shown this once")
    digits: int
    period: int


class StepUpRequest(BaseModel):
    code: str = Field(pattern=r"^[0-9]{6}$", description="the authenticator's current 6-digit code")


class StepUpToken(BaseModel):
    token: str = Field(description="send it as X-Kefu-Step-Up with the sensitive requests")
    expiresIn: int
    method: str


class AuditPage(BaseModel):
    items: list[dict]
    nextCursor: str | None


@app.post("/workspaces/<workspace>/step-up/totp", status_code=201)
def enrol_totp(workspace: str) -> TotpEnrolment:
    """Enrol the calling agent's authenticator (TOTP, RFC 6238: SHA-1, 6 digits, 30 s). The secret is in this
    response only. Replacing an enrolled authenticator needs a step-up first (a current code of the old one, or
    the integrator's sign-on: POST /integrations/agent-tokens with stepUp)."""
    agent = _staff(workspace, "agent")
    store_ = wiring.step_up_store()
    if store_.enrolled(workspace, agent.id) is not None:
        _require_step_up(workspace, agent)
    secret = step_up.new_secret()
    store_.enrol(workspace, agent.id, secret, now_iso())
    _audit(workspace, "step_up.enrol", agent.id, by=agent)
    return TotpEnrolment(otpauthUri=step_up.otpauth_uri(secret, workspace, agent.id), secret=secret,
                         digits=step_up.DIGITS, period=step_up.PERIOD_S)


@app.post("/workspaces/<workspace>/step-up")
def verify_step_up(workspace: str, body: StepUpRequest) -> StepUpToken:
    """Step up with the authenticator's current code: a step-up token of the calling agent, valid 5 minutes.
    A code works once; 5 wrong codes in 5 minutes lock step-up for the rest of those 5 minutes (429)."""
    import time

    from kefu.errors import RateLimited

    agent = _staff(workspace, "agent")
    store_ = wiring.step_up_store()
    enrolment = store_.enrolled(workspace, agent.id)
    if enrolment is None or not enrolment.get("secret"):
        raise Conflict("no authenticator is enrolled: POST /workspaces/{ws}/step-up/totp first")
    window = step_up.failure_window()
    retry_after = window + step_up.FAILURE_WINDOW_S - int(time.time())
    if store_.failures(enrolment, window) >= step_up.MAX_FAILURES:
        _audit(workspace, "step_up.locked", agent.id, by=agent, outcome="refused")
        raise RateLimited(f"too many wrong codes: try again in {retry_after} s", retry_after=retry_after)
    step = step_up.match_step(enrolment["secret"], body.code, after_step=int(enrolment.get("lastStep", -1)))
    if step is None or not store_.use_step(workspace, agent.id, step):
        failures = store_.count_failure(workspace, agent.id, window)
        _audit(workspace, "step_up.failure", agent.id, by=agent, outcome="refused", failures=failures)
        raise step_up.StepUpRequired("wrong or already used code")
    token = step_up.issue(wiring.signing_key(), workspace=workspace, agent_id=agent.id, method="totp")
    _audit(workspace, "step_up.verify", agent.id, by=agent, method="totp")
    return StepUpToken(token=token, expiresIn=step_up.STEP_UP_TTL_S, method="totp")


@app.get("/workspaces/<workspace>/audit")
def audit_log(
    workspace: str,
    actor: Annotated[str | None, Query(max_length=80, pattern=r"^([a-z]+:)?[A-Za-z0-9_.:\-]{1,64}$",
                                       description="an agent id, or type:id (agent:adm, integration:keyid)")] = None,
    action: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_]+\.[a-z_]+$",
                                        description="e.g. api_key.issue, step_up.failure")] = None,
    start: Annotated[str | None, Query(alias="from", max_length=40,
                                       description="a day (2026-11-21) or an ISO 8601 instant, included")] = None,
    end: Annotated[str | None, Query(alias="to", max_length=40,
                                     description="a day or an ISO 8601 instant, included")] = None,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AuditPage:
    """The workspace's audit log (admins), newest first: who did what, when, from which address and user agent,
    filtered by actor, action and time; `nextCursor` continues. Entries are kept 400 days."""
    _staff(workspace, "admin")
    try:
        low = audit.parse_time(start) if start else None
        high = audit.parse_time(end) if end else None
    except ValueError as error:
        raise InvalidRequest(f"from/to: {error}") from None
    items, next_cursor = wiring.audit_store().query(workspace, actor=actor, action=action, start=low, end=high,
                                                    cursor=cursor, limit=limit)
    return AuditPage(items=[e.public() for e in items], nextCursor=next_cursor)


# ---------------------------------------------------------------- end of audit log and step-up (issue 8)


@app.exception_handler(KefuError)
def domain_error(error: KefuError) -> Response[dict]:
    response = _error(STATUS.get(error.code, 400), error.code, error.message, error.details)
    if response.status_code == 429:  # every 429 of the API says when to retry (RFC 9110: whole seconds)
        response.headers["Retry-After"] = str(_retry_after_s(getattr(error, "retry_after", None)))
    return response


def _retry_after_s(seconds) -> int:
    import math

    try:
        return max(1, math.ceil(float(seconds)))
    except (TypeError, ValueError, OverflowError):
        return 1


@app.exception_handler(RequestValidationError)
def invalid_request(error: RequestValidationError) -> Response[dict]:
    details = [
        {"field": ".".join(str(p) for p in e.get("loc", ())), "problem": e.get("msg", "")} for e in error.errors()
    ]
    return _error(422, "invalid_request", "; ".join(f"{d['field']}: {d['problem']}" for d in details), details)


@app.exception_handler(NotFoundError)
def no_route(_: NotFoundError) -> Response[dict]:
    return _error(404, "not_found", "no such route")


def _error(status: int, code: str, message: str, details=None) -> Response[dict]:
    body = {"error": {"code": code, "message": message, "details": details}}
    return Response(status_code=status, content_type="application/json", body=body)


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    return app.resolve(event, context)
