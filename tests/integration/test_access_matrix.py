"""Access control matrix (issue 8): every REST operation and every WebSocket action, tried as every kind of caller,
on the local stack. Only the intended calls succeed.

Sources of truth, not a hand-copied list: the REST operations are those of the OpenAPI document generated from the
api function's resolver (kefu_local.openapi.build), the WebSocket actions the route keys of kefu.schema.WS_ROUTES.
An operation or route key without an entry in REST / WS below fails test_every_*_has_an_expectation.

Principals (one workspace "A" with its data, and a second workspace "B"):
  anonymous          no credentials at all
  customer           the visitor token of the customer of the conversation (or ticket) the call names
  other_customer     a visitor token of another customer of the same workspace, with a conversation of their own
  agent              a plain agent of A, the conversation's assigned agent
  other_agent        a plain agent of A, not assigned to the conversation
  supervisor, admin  agents of A with those roles (roles are read from the directory, never from the token)
  foreign_admin      an admin of B          foreign_customer  a visitor of B
  key, foreign_key   an integrator API key of A / of B (x-api-key, checked by the gateway as API Gateway does)
  expired, tampered, forged, unsigned, wrong_audience: A's admin token, expired / with a changed payload /
                     signed with another key / alg none / for another audience
  unknown_agent      an agent token of A for an id that is not in A's directory
  ghost_agent, ghost_visitor: tokens of a workspace that does not exist

Calls use ids that exist in A (so a refusal is the caller's, never a missing object); callers of B use A's ids.
Expected refusals, as the API intends (docs/security.md, docs/openapi.json):
  401  no valid token (missing, expired, tampered, forged, unsigned, wrong audience; an agent unknown to the
       directory) or, on /integrations, API Gateway's own 403 {"message": "Forbidden"} without a valid key
  403  the caller is of this workspace but their role or kind may not do this
  404  another workspace's caller (their ids are unknown, never forbidden), or a caller of this workspace who may
       not see this conversation or ticket (a conversation is hidden from everyone but its participants)
Every allowed call must succeed (2xx) with the dummy bodies below, and a 2xx answer to a caller of another
workspace or conversation must not contain this workspace's ids (no leaks through lists)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote

import jwt
import pytest
import requests
from kefu import schema, tokens
from kefu.models import Agent, Message, now_iso
from websockets.exceptions import InvalidStatus

from .conftest import Socket

OK = "ok"
GW = "gateway"  # API Gateway's 403 {"message": "Forbidden"}: no valid integrator key

CUSTOMERS = ("customer", "other_customer")
AGENTS = ("agent", "other_agent")  # plain agents
STAFF = (*AGENTS, "supervisor", "admin")
FOREIGN = ("foreign_admin", "foreign_customer")
KEYS = ("key", "foreign_key")
BAD_TOKENS = ("expired", "tampered", "forged", "unsigned", "wrong_audience")
GHOSTS = ("ghost_agent", "ghost_visitor")
PRINCIPALS = ("anonymous", *CUSTOMERS, *STAFF, *FOREIGN, *KEYS, *BAD_TOKENS, "unknown_agent", *GHOSTS)
NO_BEARER = ("anonymous", *KEYS, *BAD_TOKENS)  # nothing a bearer route accepts
RANK = {"agent": 0, "supervisor": 1, "admin": 2}
WECHAT_TOKEN = "acltoken1"


# ---------------------------------------------------------------- who may call what (REST)


def anyone(p: str):
    return OK


def staff(level: str) -> Callable[[str], object]:
    """Agents of the workspace whose directory role is at least `level`."""

    def rule(p: str):
        if p in STAFF:
            return OK if RANK[{"agent": "agent", "other_agent": "agent"}.get(p, p)] >= RANK[level] else 403
        if p in CUSTOMERS:
            return 403  # a visitor token of this workspace: the wrong kind of caller
        if p == "unknown_agent":
            return 401
        if p in FOREIGN or p in GHOSTS:
            return 404
        return 401

    rule.__name__ = f"staff({level})"
    return rule


def participant(p: str):
    """The conversation's customer and its assigned agent; hidden (404) from everyone else with a valid token."""
    if p in ("customer", "agent"):
        return OK
    return 401 if p in NO_BEARER else 404


def reader(p: str):
    """Its participants, and (read only) the workspace's supervisors and admins; hidden (404) from the rest."""
    if p in ("customer", "agent", "supervisor", "admin"):
        return OK
    return 401 if p in NO_BEARER else 404


def revealer(p: str):
    """Originals of masked messages (kefu.pii): readers of the conversation of at least the workspace's
    piiRevealRole (supervisor by default); its customer and its plain agent are refused, the rest never see it."""
    if p in ("customer", "agent"):
        return 403
    return reader(p)


def visitor(p: str):
    """The widget: a visitor token of this workspace."""
    if p in CUSTOMERS:
        return OK
    if p in STAFF or p == "unknown_agent":
        return 403
    return 404 if p in FOREIGN or p in GHOSTS else 401


def member(*, customer=OK, other_customer=OK, other_agent=OK) -> Callable[[str], object]:
    """Tickets: agents of the workspace, and customers for their own tickets (their list is filtered)."""

    def rule(p: str):
        if p == "customer":
            return customer
        if p == "other_customer":
            return other_customer
        if p == "other_agent":
            return other_agent
        if p in STAFF:
            return OK
        if p == "unknown_agent":
            return 401
        return 404 if p in FOREIGN or p in GHOSTS else 401

    return rule


def integrator(*, item: bool) -> Callable[[str], object]:
    """/integrations: an API key of the workspace. Another workspace's key works on its own data: A's ids are
    unknown to it (item routes), its lists are its own."""

    def rule(p: str):
        if p == "key":
            return OK
        if p == "foreign_key":
            return 404 if item else OK
        return GW

    return rule


def visitor_tokens(p: str):
    """Anyone may get an anonymous visitor token; a bearer sent along must be an anonymous, unnamed visitor token
    of this workspace (which keeps its customer id): every token of the matrix is named, an agent's, or another
    workspace's."""
    if p in ("anonymous", *KEYS):
        return OK
    return 401 if p in BAD_TOKENS else 403


# ---- step-up (issue 8): routes a caller may use only with a fresh step-up token (X-Kefu-Step-Up), which no
# principal of the matrix has: whoever the route's rule allows is refused with 403 step_up_required instead
STEP_UP = "step_up"


def stepped(rule: Callable[[str], object]) -> Callable[[str], object]:
    def wrapped(p: str):
        verdict = rule(p)
        return STEP_UP if verdict == OK else verdict

    wrapped.__name__ = f"stepped({getattr(rule, '__name__', 'rule')})"
    return wrapped
# ---- end step-up


def wechat_callback(p: str):
    """Signed by WeChat (the workspace's callback token), not by a kefu token: nobody in the matrix signs."""
    return 401


@dataclass(frozen=True)
class Rest:
    rule: Callable[[str], object]
    body: object = None  # JSON (dict or list), raw text (str), or a function of the context
    query: object = None  # dict or a function of the context
    path: object = None  # path parameter overrides: dict or a function of the context
    fresh: Callable | None = None  # (ctx) -> path overrides: a new target for each allowed call that uses it up
    leaks: bool = True  # check 2xx answers to other workspaces' callers for this workspace's ids


def _ticket_body(ctx):
    return {"subject": "退货问题", "customerId": ctx.cust1}


ARTICLE = {"lang": "zh", "title": "退货", "answer": "七天内可以无理由退货。", "questions": ["怎么退货"]}
VARIANTS = [{"id": "a", "weight": 1, "value": "您好"}, {"id": "b", "weight": 1, "value": "欢迎"}]
EXPERIMENT = {"name": "greeting test", "kind": "greeting", "variants": VARIANTS}
WECHAT = {"token": WECHAT_TOKEN, "appId": "wx0123456789", "appSecret": "s3cret-app-secret"}
AGENT_PROFILE = {"name": "Synced", "role": "agent"}
WEBHOOK = {"url": "http://127.0.0.1:9/hook", "events": ["*"], "active": False}  # no deliveries


def _own_article(ctx) -> str:
    """The article of the caller's workspace (B has one of its own, under another id: A's id is unknown to B)."""
    return ctx.b_article if ctx.caller == "foreign_key" else ctx.article


def _jsonl(ctx) -> str:
    return json.dumps({"id": _own_article(ctx), **ARTICLE}, ensure_ascii=False) + "\n"

W = "/workspaces/{workspace}"
I = schema.INTEGRATIONS_PREFIX
REST: dict[tuple[str, str], Rest] = {
    ("GET", "/health"): Rest(anyone, leaks=False),
    ("POST", f"{W}/visitor-tokens"): Rest(visitor_tokens, body={"name": ""}, leaks=False),
    ("GET", f"{W}/proactive"): Rest(anyone, leaks=False),
    ("PUT", f"{W}/proactive"): Rest(staff("admin"), body={"rules": []}),
    ("GET", f"{W}/customer-quick-replies"): Rest(anyone, leaks=False),
    ("PUT", f"{W}/customer-quick-replies"): Rest(staff("admin"), body={"items": []}),
    # a conversation's participants (its supervisors read)
    ("GET", "/conversations/{conversation_id}/messages"): Rest(reader),
    ("GET", "/conversations/{conversation_id}/messages/{seq}/original"): Rest(revealer, path={"seq": "1"}),
    ("POST", "/conversations/{conversation_id}/attachments"): Rest(
        participant, body={"name": "a.png", "contentType": "image/png", "size": 100}),
    ("GET", "/conversations/{conversation_id}/attachments/download"): Rest(
        reader, query=lambda ctx: {"key": ctx.attachment_key}),
    # the console's admin screens
    ("GET", f"{W}/agents"): Rest(staff("supervisor")),
    ("PUT", f"{W}/agents/{{agent_id}}"): Rest(staff("admin"), body=AGENT_PROFILE),
    ("GET", f"{W}/routing"): Rest(staff("supervisor")),
    ("PUT", f"{W}/routing"): Rest(staff("admin"), body={}),
    ("GET", f"{W}/bot"): Rest(staff("supervisor")),
    ("PUT", f"{W}/bot"): Rest(staff("admin"), body={"enabled": False}),
    ("GET", f"{W}/survey"): Rest(staff("supervisor")),
    ("PUT", f"{W}/survey"): Rest(staff("admin"), body={"nps": False}),
    ("GET", f"{W}/kb/articles"): Rest(staff("agent")),
    ("GET", f"{W}/kb/articles/{{article_id}}"): Rest(staff("agent")),
    # (the article as it is: an unchanged article trains no new model, which would cost seconds of CPU)
    ("PUT", f"{W}/kb/articles/{{article_id}}"): Rest(staff("supervisor"), body=ARTICLE),
    ("DELETE", f"{W}/kb/articles/{{article_id}}"): Rest(staff("supervisor"), fresh=lambda ctx: ctx.new_article()),
    ("POST", f"{W}/kb/import"): Rest(staff("supervisor"), body=_jsonl),
    ("POST", f"{W}/kb/ask"): Rest(staff("agent"), body={"text": "怎么退货"}),
    ("GET", f"{W}/kb/model"): Rest(staff("agent")),
    ("POST", f"{W}/kb/maintain"): Rest(staff("supervisor"), body={"dryRun": True}),
    ("GET", f"{W}/kb/maintenance"): Rest(staff("supervisor")),
    # tickets
    ("POST", f"{W}/tickets"): Rest(member(customer=403, other_customer=403), body=_ticket_body),
    ("GET", f"{W}/tickets"): Rest(member()),
    ("GET", f"{W}/tickets/{{ticket_id}}"): Rest(member(other_customer=404)),
    ("PATCH", f"{W}/tickets/{{ticket_id}}"): Rest(member(customer=403, other_customer=403),
                                                   body={"priority": "high"}),
    ("POST", f"{W}/tickets/{{ticket_id}}/status"): Rest(member(other_customer=404), body={"status": "resolved"},
                                                         fresh=lambda ctx: ctx.new_ticket()),
    ("GET", f"{W}/tickets/{{ticket_id}}/comments"): Rest(member(other_customer=404)),
    ("POST", f"{W}/tickets/{{ticket_id}}/comments"): Rest(member(other_customer=404), body={"text": "还没收到"}),
    ("POST", f"{W}/tickets/{{ticket_id}}/conversations"): Rest(
        member(customer=403, other_customer=403, other_agent=404),  # agents link conversations they are in
        body=lambda ctx: {"conversationId": ctx.c1.id}),
    ("GET", f"{W}/ticket-settings"): Rest(staff("supervisor")),
    ("PUT", f"{W}/ticket-settings"): Rest(staff("admin"), body={}),
    ("GET", f"{W}/quick-replies"): Rest(staff("agent")),
    ("PUT", f"{W}/quick-replies"): Rest(staff("supervisor"), body={"items": [{"title": "hi", "text": "您好"}]}),
    ("GET", f"{W}/customers/{{customer_id}}"): Rest(stepped(staff("agent"))),  # history beyond the conversation
    # data protection (kefu.privacy): admins; an allowed erasure gets a customer of its own (made in A)
    ("GET", f"{W}/privacy"): Rest(staff("admin")),
    ("PUT", f"{W}/privacy"): Rest(staff("admin"), body={"retentionDays": 365}),
    ("GET", f"{W}/customers/{{customer_id}}/export"): Rest(stepped(staff("admin"))),  # issue 8: step-up
    ("DELETE", f"{W}/customers/{{customer_id}}"): Rest(stepped(staff("admin")), fresh=lambda ctx: ctx.new_customer()),
    ("GET", f"{W}/conversations"): Rest(staff("supervisor")),
    ("GET", f"{W}/metrics/hourly"): Rest(staff("supervisor")),
    ("GET", f"{W}/metrics"): Rest(staff("supervisor")),
    ("POST", f"{W}/api-keys"): Rest(staff("admin"), body={"name": "matrix"}),
    ("GET", f"{W}/api-keys"): Rest(staff("admin")),
    ("DELETE", f"{W}/api-keys/{{key_id}}"): Rest(staff("admin"), fresh=lambda ctx: ctx.new_key()),
    ("GET", "/channels/wechat/{workspace}"): Rest(wechat_callback, query={"echostr": "x"}),
    ("POST", "/channels/wechat/{workspace}"): Rest(wechat_callback, body="<xml></xml>"),
    ("GET", f"{W}/channels/wechat"): Rest(staff("admin")),
    ("PUT", f"{W}/channels/wechat"): Rest(staff("admin"), body=WECHAT),
    ("POST", f"{W}/webhooks"): Rest(staff("admin"), body=WEBHOOK),
    ("GET", f"{W}/webhooks"): Rest(staff("admin")),
    ("GET", f"{W}/webhooks/{{subscription_id}}"): Rest(staff("admin")),
    ("PATCH", f"{W}/webhooks/{{subscription_id}}"): Rest(staff("admin"), body={"description": "matrix"}),
    ("DELETE", f"{W}/webhooks/{{subscription_id}}"): Rest(staff("admin"), fresh=lambda ctx: ctx.new_webhook()),
    ("POST", f"{W}/webhooks/{{subscription_id}}/rotate-secret"): Rest(staff("admin")),
    ("GET", f"{W}/webhooks/{{subscription_id}}/deliveries"): Rest(staff("admin")),
    # A/B experiments and the widget's events
    ("POST", f"{W}/experiments"): Rest(staff("admin"), body=EXPERIMENT),
    ("GET", f"{W}/experiments"): Rest(staff("supervisor")),
    ("GET", f"{W}/experiments/assignments"): Rest(visitor),
    ("GET", f"{W}/experiments/{{experiment_id}}"): Rest(staff("supervisor")),
    ("POST", f"{W}/experiments/{{experiment_id}}/start"): Rest(staff("admin"),
                                                                fresh=lambda ctx: ctx.new_experiment()),
    ("POST", f"{W}/experiments/{{experiment_id}}/stop"): Rest(staff("admin"), body={},
                                                               fresh=lambda ctx: ctx.new_experiment(start=True)),
    ("POST", f"{W}/events"): Rest(visitor, body=lambda ctx: {"eventId": "ev-" + secrets.token_hex(4),
                                                             "type": "order_placed", "value": 10}),
    ("GET", f"{W}/conversions"): Rest(staff("supervisor")),
    # step-up and the audit log (issue 8): the matrix's agents are enrolled (Matrix.__init__), so enrolling again
    # needs a step-up, and the dummy code is wrong (one failure each, under the limit of 5)
    ("POST", f"{W}/step-up/totp"): Rest(stepped(staff("agent"))),
    ("POST", f"{W}/step-up"): Rest(stepped(staff("agent")), body={"code": "000000"}),
    ("GET", f"{W}/audit"): Rest(staff("admin")),
    # integrators
    ("POST", f"{I}/agent-tokens"): Rest(integrator(item=True), body={"agentId": "ag"}),
    ("GET", f"{I}/agents"): Rest(integrator(item=False)),
    ("PUT", f"{I}/agents/{{agent_id}}"): Rest(integrator(item=False), body=AGENT_PROFILE),
    ("POST", f"{I}/channels/rest/messages"): Rest(integrator(item=False), body=lambda ctx: {
        "customerId": "rest-" + secrets.token_hex(4), "text": "你好", "messageId": "m1"}),
    ("GET", f"{I}/conversations"): Rest(integrator(item=False)),
    ("GET", f"{I}/conversations/{{conversation_id}}"): Rest(integrator(item=True)),
    ("POST", f"{I}/conversations/{{conversation_id}}/close"): Rest(integrator(item=True), body={"resolved": True},
                                                                    fresh=lambda ctx: ctx.new_rest_conversation()),
    ("GET", f"{I}/conversations/{{conversation_id}}/messages"): Rest(integrator(item=True)),
    ("GET", f"{I}/customers/{{customer_id}}"): Rest(integrator(item=True)),
    ("POST", f"{I}/events"): Rest(integrator(item=False), body=lambda ctx: {
        "eventId": "iev-" + secrets.token_hex(4), "type": "payment_succeeded", "customerId": ctx.cust1}),
    ("GET", f"{I}/groups"): Rest(integrator(item=False)),
    ("GET", f"{I}/kb/articles"): Rest(integrator(item=False)),
    ("GET", f"{I}/kb/articles/{{article_id}}"): Rest(integrator(item=True)),
    ("PUT", f"{I}/kb/articles/{{article_id}}"): Rest(integrator(item=False), body=ARTICLE,
                                                      path=lambda ctx: {"article_id": _own_article(ctx)}),
    ("DELETE", f"{I}/kb/articles/{{article_id}}"): Rest(integrator(item=True), fresh=lambda ctx: ctx.new_article()),
    ("POST", f"{I}/kb/ask"): Rest(integrator(item=False), body={"text": "怎么退货"}),
    ("POST", f"{I}/kb/import"): Rest(integrator(item=False), body=_jsonl),
    ("GET", f"{I}/tickets"): Rest(integrator(item=False)),
    ("POST", f"{I}/tickets"): Rest(integrator(item=False), body={"subject": "CRM ticket"}),
    ("GET", f"{I}/tickets/{{ticket_id}}"): Rest(integrator(item=True)),
    ("PATCH", f"{I}/tickets/{{ticket_id}}"): Rest(integrator(item=True), body={"priority": "high"}),
    ("GET", f"{I}/tickets/{{ticket_id}}/comments"): Rest(integrator(item=True)),
    ("POST", f"{I}/tickets/{{ticket_id}}/comments"): Rest(integrator(item=True), body={"text": "synced"}),
    ("POST", f"{I}/tickets/{{ticket_id}}/status"): Rest(integrator(item=True), body={"status": "resolved"},
                                                         fresh=lambda ctx: ctx.new_ticket()),
    ("POST", f"{I}/visitor-tokens"): Rest(integrator(item=False), body={"customerId": "crm-1"}),
    ("GET", f"{I}/webhooks"): Rest(integrator(item=False)),
    ("POST", f"{I}/webhooks"): Rest(integrator(item=False), body=WEBHOOK),
    ("PATCH", f"{I}/webhooks/{{subscription_id}}"): Rest(integrator(item=True), body={"description": "crm"}),
    ("DELETE", f"{I}/webhooks/{{subscription_id}}"): Rest(integrator(item=True), fresh=lambda ctx: ctx.new_webhook()),
    ("GET", f"{I}/webhooks/{{subscription_id}}/deliveries"): Rest(integrator(item=True)),
}


# ---------------------------------------------------------------- who may send what (WebSocket)

WS_PRINCIPALS = ("customer", "other_customer", *STAFF, *FOREIGN)
ME = {"agent": "ag", "other_agent": "ag2", "supervisor": "sup", "admin": "adm", "foreign_admin": "adm"}


def _only(allowed: dict[str, str], refused: dict[tuple[str, ...], str]) -> dict[str, str]:
    """principal -> the reply's type (allowed) or "!code" (the error frame's code)."""
    table = dict(allowed)
    for principals, code in refused.items():
        table.update({p: "!" + code for p in principals})
    assert set(table) == set(WS_PRINCIPALS), sorted(set(WS_PRINCIPALS) ^ set(table))
    return table


@dataclass(frozen=True)
class Ws:
    frame: Callable[[object, str], dict]  # (scene, principal) -> frame
    expect: dict[str, str]
    scene: str = "c1"  # the conversation refused callers try: the shared assigned "c1", "queued" or "closed"
    fresh: str | None = None  # allowed callers get a new scene of this kind ("assigned", "queued")
    check: Callable[[str, dict], None] | None = None  # more about an allowed reply


def _snapshot_check(p: str, reply: dict) -> None:
    supervisor = p in ("supervisor", "admin", "foreign_admin")
    assert reply["supervisor"] is supervisor and (bool(reply["agents"]) or not supervisor), reply


OTHERS_NOT_FOUND = ("other_customer", "other_agent", "supervisor", "admin", *FOREIGN)
WS: dict[str, Ws] = {
    "message": Ws(lambda s, p: {"action": "message", "conversationId": s.id, "clientMessageId": f"m-{p}",
                                "text": "你好"},
                  _only({"customer": "ack", "agent": "ack"}, {OTHERS_NOT_FOUND: "not_found"})),
    "typing": Ws(lambda s, p: {"action": "typing", "conversationId": s.id},
                 _only({"customer": "typing.ok", "agent": "typing.ok"}, {OTHERS_NOT_FOUND: "not_found"})),
    # supervisors and admins read any conversation of their workspace (the console's "all" tab), never write
    "sync": Ws(lambda s, p: {"action": "sync", "conversationId": s.id, "afterSeq": 0},
               _only({"customer": "sync", "agent": "sync", "supervisor": "sync", "admin": "sync"},
                     {("other_customer", "other_agent", *FOREIGN): "not_found"})),
    "inbox": Ws(lambda s, p: {"action": "inbox"}, _only({p: "inbox" for p in WS_PRINCIPALS}, {})),
    "route": Ws(lambda s, p: {"action": "route", "conversationId": s.id},
                _only({"customer": "routed", "supervisor": "routed", "admin": "routed"},
                      {("agent",): "forbidden",  # agents transfer with handoff
                       ("other_customer", "other_agent", *FOREIGN): "not_found"})),
    "rate": Ws(lambda s, p: {"action": "rate", "conversationId": s.id, "seq": s.bot_seq, "helpful": True},
               _only({"customer": "rated"}, {(*STAFF, "foreign_admin"): "forbidden",
                                              ("other_customer", "foreign_customer"): "not_found"})),
    "suggestion": Ws(lambda s, p: {"action": "suggestion", "conversationId": s.id, "suggestionId": s.suggestion,
                                   "decision": "reject"},
                     _only({"agent": "suggestion"}, {(*CUSTOMERS, "foreign_customer"): "forbidden",
                                                     ("other_agent", "supervisor", "admin", "foreign_admin"):
                                                         "not_found"})),
    "offline_form": Ws(lambda s, p: {"action": "offline_form", "conversationId": s.id, "name": "张三",
                                     "contact": "zs@example.com", "question": "什么时候发货？"},
                       _only({"customer": "offline_form"}, {(*STAFF, "foreign_admin"): "forbidden",
                                                            ("other_customer", "foreign_customer"): "not_found"})),
    "close": Ws(lambda s, p: {"action": "close", "conversationId": s.id},
                _only({p: "closed" for p in ("customer", "agent", "supervisor", "admin")},
                      {("other_customer", "other_agent", *FOREIGN): "not_found"}),
                fresh="assigned"),
    "handoff": Ws(lambda s, p: {"action": "handoff", "conversationId": s.id, "to": {"group": "night"}},
                  _only({p: "handoff" for p in ("agent", "supervisor", "admin")},
                        {(*CUSTOMERS, "other_agent", "foreign_customer"): "forbidden",
                         ("foreign_admin",): "not_found"}),
                  fresh="assigned"),
    "cancel": Ws(lambda s, p: {"action": "cancel", "conversationId": s.id},
                 _only({"customer": "cancelled"}, {(*STAFF, "foreign_admin"): "forbidden",
                                                   ("other_customer", "foreign_customer"): "not_found"}),
                 scene="queued", fresh="queued"),
    # a waiting conversation of the "night" group: agents take one of their groups for themselves
    "assign": Ws(lambda s, p: {"action": "assign", "conversationId": s.id, "agentId": ME.get(p, "ag2")},
                 _only({p: "assign" for p in ("other_agent", "supervisor", "admin")},
                       {("agent", *CUSTOMERS, "foreign_customer"): "forbidden", ("foreign_admin",): "not_found"}),
                 scene="queued", fresh="queued"),
    # ... and only supervisors give one to someone else
    "assign:someone else": Ws(
        lambda s, p: {"action": "assign", "conversationId": s.id, "agentId": "ag2" if p == "agent" else "ag"},
        _only({"supervisor": "assign", "admin": "assign"},
              {(*AGENTS, *CUSTOMERS, "foreign_customer"): "forbidden", ("foreign_admin",): "not_found"}),
        scene="queued", fresh="queued"),
    "csat": Ws(lambda s, p: {"action": "csat", "conversationId": s.id, "score": 5},
               _only({"customer": "csat"}, {(*STAFF, "foreign_admin"): "forbidden",
                                            ("other_customer", "foreign_customer"): "not_found"}),
               scene="closed"),
    "presence": Ws(lambda s, p: {"action": "presence", "status": "online" if p == "agent" else "away"},
                   _only({p: "presence" for p in (*STAFF, "foreign_admin")},
                         {(*CUSTOMERS, "foreign_customer"): "forbidden"})),
    "snapshot": Ws(lambda s, p: {"action": "snapshot"},
                   _only({p: "snapshot" for p in (*STAFF, "foreign_admin")},
                         {(*CUSTOMERS, "foreign_customer"): "forbidden"}), check=_snapshot_check),
    "$default": Ws(lambda s, p: {"action": "no_such_action"}, _only({}, {WS_PRINCIPALS: "unknown_action"})),
}
# not frames: $connect is the token check (test_connect_refuses_bad_tokens), $disconnect runs when a socket closes
WS_NOT_FRAMES = {"$connect", "$disconnect"}


# ---------------------------------------------------------------- the two workspaces


@dataclass
class Scene:
    """A conversation and its customer's socket."""

    id: str
    customer: Socket
    customer_id: str
    bot_seq: int = 0
    suggestion: str = ""


class Matrix:
    def __init__(self, stack, store, key):
        self.stack, self.store, self.key = stack, store, key
        self._local = threading.local()
        # new conversations are made a few at a time (the stack waits on moto meanwhile)
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="matrix")
        self.sockets: list[Socket] = []
        tag = secrets.token_hex(4)
        self.a, self.b, self.ghost = f"acl-{tag}", f"aclb-{tag}", f"ghost-{tag}"  # no id contains another
        self.cust1, self.cust2 = f"cust-{tag}-1", f"cust-{tag}-2"
        self.article, self.b_article = f"art-{tag}", f"bart-{tag}"
        self.caller = ""  # who the REST matrix is calling as (some bodies depend on it)
        store.put_workspace(self.a, "access matrix")
        store.put_workspace(self.b, "access matrix, another workspace")
        store.put_bot_settings(self.a, {"enabled": False})  # the KB's model must not make the bot take chats
        store.put_bot_settings(self.b, {"enabled": False})
        for agent in (Agent(self.a, "ag", "Agent", groups=("sales",), max_concurrent=50),
                      Agent(self.a, "ag2", "Night Agent", groups=("night",), max_concurrent=50),
                      Agent(self.a, "sup", "Supervisor", role="supervisor", max_concurrent=50),
                      Agent(self.a, "adm", "Admin", role="admin", max_concurrent=50),
                      Agent(self.b, "adm", "Admin B", role="admin")):
            store.put_agent(agent)
        from kefu import step_up, wiring  # issue 8: A's agents have enrolled an authenticator

        for agent_id in ("ag", "ag2", "sup", "adm"):
            wiring.step_up_store().enrol(self.a, agent_id, step_up.new_secret(), now_iso())

        # bearer tokens and keys
        admin_claims = jwt.decode(self.token("agent", "adm"), options={"verify_signature": False})
        visitor = self.token("visitor", self.cust1, name="Zhang San")
        head, _, sig = visitor.split(".")
        payload = _b64(json.dumps({**admin_claims, "kind": "agent", "sub": "adm"}).encode())
        self.bearer = {
            "customer": visitor,
            "other_customer": self.token("visitor", self.cust2, name="Li Si"),
            "agent": self.token("agent", "ag"),
            "other_agent": self.token("agent", "ag2"),
            "supervisor": self.token("agent", "sup"),
            "admin": self.token("agent", "adm"),
            "foreign_admin": self.token("agent", "adm", workspace=self.b),
            "foreign_customer": self.token("visitor", f"cust-{tag}-b", name="Wang Wu", workspace=self.b),
            "expired": tokens.issue(key, kind="agent", workspace=self.a, subject="adm", ttl_s=60,
                                    now=time.time() - 3600),
            "tampered": f"{head}.{payload}.{sig}",  # a visitor's signature on an admin's claims
            "forged": jwt.encode(admin_claims, "not-the-signing-key-" + "x" * 32, algorithm="HS256"),
            "unsigned": _b64(b'{"alg":"none","typ":"JWT"}') + "." + _b64(json.dumps(admin_claims).encode()) + ".",
            "wrong_audience": jwt.encode({**admin_claims, "aud": "kefu-console"}, key, algorithm="HS256"),
            "unknown_agent": self.token("agent", "nobody"),
            "ghost_agent": self.token("agent", "adm", workspace=self.ghost),
            "ghost_visitor": self.token("visitor", self.cust1, name="Zhang San", workspace=self.ghost),
        }
        self.api_key = self.call("POST", f"/workspaces/{self.a}/api-keys", "admin", json={"name": "matrix"}).json()
        self.foreign_key = self.call("POST", f"/workspaces/{self.b}/api-keys", "foreign_admin",
                                     json={"name": "matrix"}).json()["key"]

        # sockets: "ag" online in sales, everyone else away (so routing is predictable: every new conversation
        # without a group goes to ag; one of the "night" group waits in the queue)
        self.ws: dict[str, Socket] = {}
        for p, status in (("agent", "online"), ("other_agent", "away"), ("supervisor", "away"),
                          ("admin", "away"), ("foreign_admin", "away")):
            self.ws[p] = self.connect(self.bearer[p])
            self.ws[p].request({"action": "presence", "status": status}, type="presence")
        c1 = self.pool.submit(self.assigned, self.cust1, token=self.bearer["customer"])
        c2 = self.pool.submit(self.assigned, self.cust2, token=self.bearer["other_customer"])
        queued, closed = self.pool.submit(self.queued), self.pool.submit(self.assigned)
        self.ws["foreign_customer"] = self.connect(self.bearer["foreign_customer"])
        self.c1, self.c2, self.queued_scene, self.closed_scene = c1.result(), c2.result(), queued.result(), closed.result()
        self.ws["customer"], self.ws["other_customer"] = self.c1.customer, self.c2.customer
        self.ws["agent"].request({"action": "close", "conversationId": self.closed_scene.id}, type="closed")

        # data of A that the calls name
        admin = "admin"
        for workspace, article, who in ((self.a, self.article, admin), (self.b, self.b_article, "foreign_admin")):
            put = self.call("PUT", f"/workspaces/{workspace}/kb/articles/{article}", who, json=ARTICLE)
            assert put.status_code == 200, put.text
        ticket = self.call("POST", f"/workspaces/{self.a}/tickets", admin,
                           json={"subject": "订单未到", "customerId": self.cust1, "conversationId": self.c1.id})
        assert ticket.status_code == 201, ticket.text
        self.ticket = ticket.json()["ticketId"]
        self.webhook = self.new_webhook()["subscription_id"]
        self.experiment = self.new_experiment()["experiment_id"]
        self.spare_key = self.new_key()["key_id"]
        wechat = self.call("PUT", f"/workspaces/{self.a}/channels/wechat", admin, json=WECHAT)
        assert wechat.status_code == 200, wechat.text
        self.attachment_key = self._attachment()
        self._bot_answer_and_suggestion()
        self.ids = {"workspace": self.a, "conversation_id": self.c1.id, "agent_id": "synced-agent",
                    "article_id": self.article, "ticket_id": self.ticket, "key_id": self.spare_key,
                    "subscription_id": self.webhook, "experiment_id": self.experiment, "customer_id": self.cust1}
        # what no caller of another workspace may see, and no other customer of this one
        self.foreign_secrets = {self.a, self.c1.id, self.c2.id, self.ticket, self.webhook, self.experiment,
                                self.api_key["keyId"], self.cust1, self.cust2}
        self.customer_secrets = {self.c1.id, self.ticket, self.cust1}

    # ------------------------------------------------------------ helpers

    def token(self, kind: str, subject: str, workspace: str | None = None, **kw) -> str:
        return tokens.issue(self.key, kind=kind, workspace=workspace or self.a, subject=subject, **kw)

    def headers(self, p: str) -> dict:
        if p == "key":
            return {"x-api-key": self.api_key["key"]}
        if p == "foreign_key":
            return {"x-api-key": self.foreign_key}
        if p == "anonymous":
            return {}
        return {"Authorization": f"Bearer {self.bearer[p]}"}

    def call(self, method: str, path: str, p: str, **kw) -> requests.Response:
        http = getattr(self._local, "http", None)
        if http is None:
            http = self._local.http = requests.Session()  # one per thread, kept alive
        return http.request(method, self.stack.api_url + path, headers=self.headers(p), timeout=30, **kw)

    def connect(self, token: str) -> Socket:
        socket = Socket(f"{self.stack.ws_url}?token={token}")
        self.sockets.append(socket)
        return socket

    def assigned(self, customer_id: str | None = None, token: str | None = None) -> Scene:
        """A new conversation, assigned to ag (the only agent online)."""
        customer_id = customer_id or "c-" + secrets.token_hex(4)
        socket = self.connect(token or self.token("visitor", customer_id, name="顾客"))
        ack = socket.request({"action": "message", "clientMessageId": "open", "text": "我的订单还没到"}, type="ack")
        socket.expect(type="routed", status="assigned", conversationId=ack["conversationId"])
        return Scene(ack["conversationId"], socket, customer_id)

    def queued(self) -> Scene:
        """A new conversation waiting in the "night" group's queue (its agent, ag2, is away)."""
        customer_id = "c-" + secrets.token_hex(4)
        socket = self.connect(self.token("visitor", customer_id, name="顾客"))
        ack = socket.request({"action": "message", "clientMessageId": "open", "text": "晚上有人吗", "group": "night"},
                             type="ack")
        socket.expect(type="queue", conversationId=ack["conversationId"])
        return Scene(ack["conversationId"], socket, customer_id)

    def new_article(self) -> dict:
        article_id = "del-" + secrets.token_hex(4)
        put = self.call("PUT", f"/workspaces/{self.a}/kb/articles/{article_id}", "admin", json=ARTICLE)
        assert put.status_code == 200, put.text
        return {"article_id": article_id}

    def new_customer(self) -> dict:
        """A customer of A with a ticket, for one allowed erasure (the shared cust1 stays)."""
        customer_id = "gone-" + secrets.token_hex(4)
        created = self.call("POST", f"{I}/tickets", "key", json={"subject": "删除我", "customerId": customer_id})
        assert created.status_code == 201, created.text
        return {"customer_id": customer_id}

    def new_ticket(self) -> dict:
        created = self.call("POST", f"{I}/tickets", "key", json=_ticket_body(self))
        assert created.status_code == 201, created.text
        return {"ticket_id": created.json()["ticketId"]}

    def new_key(self) -> dict:
        created = self.call("POST", f"/workspaces/{self.a}/api-keys", "admin", json={"name": "spare"})
        assert created.status_code == 201, created.text
        return {"key_id": created.json()["keyId"]}

    def new_webhook(self) -> dict:
        created = self.call("POST", f"/workspaces/{self.a}/webhooks", "admin", json=WEBHOOK)
        assert created.status_code == 201, created.text
        return {"subscription_id": created.json()["subscriptionId"]}

    def new_experiment(self, start: bool = False) -> dict:
        created = self.call("POST", f"/workspaces/{self.a}/experiments", "admin", json=EXPERIMENT)
        assert created.status_code == 201, created.text
        experiment_id = created.json()["experimentId"]
        if start:
            started = self.call("POST", f"/workspaces/{self.a}/experiments/{experiment_id}/start", "admin")
            assert started.status_code == 200, started.text
        return {"experiment_id": experiment_id}

    def new_rest_conversation(self) -> dict:
        sent = self.call("POST", f"{I}/channels/rest/messages", "key", json={
            "customerId": "rest-" + secrets.token_hex(4), "text": "你好", "messageId": "m1"})
        assert sent.status_code == 202, sent.text
        return {"conversation_id": sent.json()["conversationId"]}

    def _attachment(self) -> str:
        """A file in C1, uploaded by its customer: a download link is then the participants' to ask for."""
        png = b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(200)
        issued = self.call("POST", f"/conversations/{self.c1.id}/attachments", "customer",
                           json={"name": "cat.png", "contentType": "image/png", "size": len(png)})
        assert issued.status_code == 201, issued.text
        ticket = issued.json()
        uploaded = requests.post(ticket["url"], data=ticket["fields"], files={"file": ("blob", png)}, timeout=10)
        assert uploaded.status_code in (200, 201, 204), uploaded.text
        return ticket["attachment"]["key"]

    def _bot_answer_and_suggestion(self) -> None:
        """C1 gets an answer of the bot the customer may rate, and an answer the bot suggests to its agent (as
        the bot leaves them: written directly, the workspace's bot is off)."""
        from kefu.adapters.dynamodb import MetaItem, _update_meta

        conversation = self.store.get_conversation(self.a, self.c1.id)
        self.c1.bot_seq = conversation.last_seq + 1
        self.store.append_message(conversation, Message(
            conversation.id, self.c1.bot_seq, "bot-answer-1", {"role": "bot", "id": "bot", "name": "智能助手"},
            ARTICLE["answer"], now_iso(), meta={"articleId": self.article, "confidence": 0.95, "rateable": True,
                                                "questionSeq": 1}), "bot")
        self.c1.suggestion = "s_" + secrets.token_hex(6)
        suggestion = {"id": self.c1.suggestion, "articleId": self.article, "title": ARTICLE["title"],
                      "answer": ARTICLE["answer"]}
        _update_meta(conversation, [MetaItem.suggestion.set(suggestion), MetaItem.suggestionId.set(suggestion["id"])],
                     MetaItem.status == "assigned")

    def close(self) -> None:
        def close(socket: Socket) -> None:
            with contextlib.suppress(Exception):  # a socket the gateway closed already
                socket.close()

        list(self.pool.map(close, self.sockets))
        self.pool.shutdown()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def matrix(stack, store, signing_key):
    m = Matrix(stack, store, signing_key)
    yield m
    m.close()


# ---------------------------------------------------------------- the tables cover everything


def test_every_rest_operation_has_an_expectation(stack):
    from kefu_local import openapi

    document = openapi.build()
    operations = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    assert operations - set(REST) == set(), "REST operations without an entry in the access matrix"
    assert set(REST) - operations == set(), "access matrix entries for operations that no longer exist"
    # and the document says how each authenticates, as the matrix expects
    for (method, path), spec in REST.items():
        security = document["paths"][path][method.lower()]["security"]
        if path.startswith(I):
            assert security == [{"apiKey": []}], (method, path)
        elif spec.rule is anyone or spec.rule is visitor_tokens:
            assert security == [], (method, path)


def test_every_websocket_route_has_an_expectation():
    covered = {name.split(":")[0] for name in WS} | WS_NOT_FRAMES
    assert set(schema.WS_ROUTES) == covered


# ---------------------------------------------------------------- REST


def _path(template: str, ids: dict) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: quote(ids[m.group(1)], safe=""), template)


def _value(value, ctx):
    return value(ctx) if callable(value) else value


def _verdict(response: requests.Response, expected, p: str, ctx: Matrix, spec: Rest) -> str | None:
    """What is wrong with this answer, or None."""
    status = response.status_code
    text = response.text[:300]
    if expected == OK:
        if not 200 <= status < 300:
            return f"expected success, got {status} {text}"
        if spec.leaks:
            secrets_ = ctx.foreign_secrets if p in (*FOREIGN, "foreign_key", *GHOSTS) else (
                ctx.customer_secrets if p == "other_customer" else set())
            leaked = sorted(s for s in secrets_ if s in response.text)
            if leaked:
                return f"succeeded but shows another's ids {leaked}: {text}"
        return None
    if expected == STEP_UP:
        try:
            found = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            found = None
        if status != 403 or found != "step_up_required":
            return f"expected 403 step_up_required, got {status} {text}"
        return None
    if expected == GW:
        if status != 403 or response.json() != {"message": "Forbidden"}:
            return f"expected the gateway's 403, got {status} {text}"
        return None
    code = {401: "unauthorized", 403: "forbidden", 404: "not_found"}[expected]
    try:
        found = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        found = None
    if status != expected or found != code:
        return f"expected {expected} {code}, got {status} {text}"
    return None


@pytest.mark.parametrize("route", list(REST), ids=[f"{m} {p}" for m, p in REST])
def test_rest(matrix, route):
    method, template = route
    spec = REST[route]
    ctx = matrix
    expectations = {p: spec.rule(p) for p in PRINCIPALS}
    # refused callers first, on the shared objects (which they must leave as they were), then the allowed ones

    def attempt(p: str) -> str | None:
        expected = expectations[p]
        ctx.caller = p
        ids = {**ctx.ids, **(_value(spec.path, ctx) or {})}
        if expected == OK and spec.fresh is not None:
            ids.update(spec.fresh(ctx))
        body = _value(spec.body, ctx)
        kwargs = {"data": body.encode()} if isinstance(body, str) else {"json": body} if body is not None else {}
        response = ctx.call(method, _path(template, ids), p, params=_value(spec.query, ctx), **kwargs)
        problem = _verdict(response, expected, p, ctx, spec)
        return f"{method} {template} as {p}: {problem}" if problem else None

    # one call at a time: the local stack runs concurrent REST calls in threads of one process, where Powertools
    # keeps the current event in a class attribute (one event per process on Lambda), so they could mix up
    problems = [attempt(p) for p in sorted(PRINCIPALS, key=lambda p: expectations[p] == OK)]
    problems = [problem for problem in problems if problem]
    assert not problems, "\n".join(problems)


def test_refused_calls_left_the_shared_objects_alone(matrix):
    """Every refused DELETE, close, revoke... named the shared objects: they are all still there."""
    ctx = matrix
    for path in (f"/workspaces/{ctx.a}/kb/articles/{ctx.article}", f"/workspaces/{ctx.a}/webhooks/{ctx.webhook}",
                 f"/workspaces/{ctx.a}/experiments/{ctx.experiment}", f"/workspaces/{ctx.a}/tickets/{ctx.ticket}"):
        assert ctx.call("GET", path, "admin").status_code == 200, path
    keys = ctx.call("GET", f"/workspaces/{ctx.a}/api-keys", "admin").json()["items"]
    assert {ctx.spare_key, ctx.api_key["keyId"]} <= {k["keyId"] for k in keys}
    assert ctx.call("GET", f"/workspaces/{ctx.a}/experiments/{ctx.experiment}", "admin").json()["status"] == "draft"
    c1 = ctx.store.get_conversation(ctx.a, ctx.c1.id)
    assert (c1.status, c1.agent_id) == ("assigned", "ag")
    agents = {a.id: a.role for a in ctx.store.list_agents(ctx.a)}
    assert {k: agents[k] for k in ("ag", "ag2", "sup", "adm")} == {"ag": "agent", "ag2": "agent",
                                                                  "sup": "supervisor", "adm": "admin"}


def test_wechat_callbacks_need_the_workspace_signature(matrix):
    """The one kind of caller the callbacks accept: a request signed with the workspace's WeChat token."""
    ctx = matrix
    timestamp, nonce = str(int(time.time())), secrets.token_hex(4)
    signature = hashlib.sha1("".join(sorted([WECHAT_TOKEN, timestamp, nonce])).encode()).hexdigest()
    signed = {"signature": signature, "timestamp": timestamp, "nonce": nonce}
    url = f"{ctx.stack.api_url}/channels/wechat/{ctx.a}"
    echo = requests.get(url, params={**signed, "echostr": "hello"}, timeout=10)
    assert (echo.status_code, echo.text) == (200, "hello")
    event = ("<xml><ToUserName>gh_1</ToUserName><FromUserName>o_user</FromUserName><CreateTime>1</CreateTime>"
             "<MsgType>event</MsgType><Event>subscribe</Event></xml>")
    assert requests.post(url, params=signed, data=event.encode(), timeout=10).status_code == 200
    # the signature of another workspace's token is not this workspace's
    other = hashlib.sha1("".join(sorted(["othertoken", timestamp, nonce])).encode()).hexdigest()
    assert requests.post(url, params={**signed, "signature": other}, data=event.encode(),
                         timeout=10).status_code == 401


def test_tokens_of_a_workspace_that_does_not_exist_are_refused_on_its_own_paths(matrix):
    """A valid signature on a workspace that does not exist (deleted, or never made) opens nothing, also where the
    path names that workspace (the matrix above calls with this workspace's paths)."""
    ctx = matrix
    g = f"/workspaces/{ctx.ghost}"
    calls = [("ghost_visitor", "GET", f"{g}/experiments/assignments", None),
             ("ghost_visitor", "POST", f"{g}/events", {"eventId": "ev-ghost", "type": "order_placed"}),
             ("ghost_visitor", "GET", f"{g}/tickets", None),
             ("ghost_agent", "GET", f"{g}/agents", None),
             ("ghost_agent", "GET", f"{g}/tickets", None),
             ("ghost_agent", "POST", f"{g}/tickets", {"subject": "x"})]
    problems = []
    for p, method, path, body in calls:
        response = ctx.call(method, path, p, json=body)
        if response.status_code != 401 or response.json()["error"]["code"] != "unauthorized":
            problems.append(f"{method} {path} as {p}: {response.status_code} {response.text[:200]}")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------- WebSocket


def test_connect_refuses_bad_tokens(matrix):
    """$connect: no token, a bad one → 401; a valid one naming no workspace or agent we know → 403 (Deny)."""
    ctx = matrix
    expected = {"anonymous": 401, **{p: 401 for p in BAD_TOKENS}, "unknown_agent": 403, "ghost_agent": 403,
                "ghost_visitor": 403}
    problems = []
    for p, status in expected.items():
        url = ctx.stack.ws_url + ("" if p == "anonymous" else f"?token={ctx.bearer[p]}")
        try:
            Socket(url).close()
            problems.append(f"{p}: connected")
        except InvalidStatus as refused:
            if refused.response.status_code != status:
                problems.append(f"{p}: expected {status}, got {refused.response.status_code}")
    assert not problems, "\n".join(problems)


def _scene(ctx: Matrix, kind: str) -> Scene:
    return {"c1": ctx.c1, "queued": ctx.queued_scene, "closed": ctx.closed_scene}[kind]


def _send(socket: Socket, frame: dict) -> dict:
    request_id = "r" + secrets.token_hex(4)
    socket.send({**frame, "requestId": request_id})
    return socket.expect(requestId=request_id)


@pytest.mark.parametrize("name", list(WS))
def test_websocket(matrix, name):
    ctx = matrix
    spec = WS[name]
    order = sorted(WS_PRINCIPALS, key=lambda p: not spec.expect[p].startswith("!"))  # refused callers first
    scenes = {p: _scene(ctx, spec.scene) for p in order}
    if spec.fresh:  # each allowed caller gets a conversation of its own (made in parallel)
        allowed = [p for p in order if not spec.expect[p].startswith("!")]
        make = ctx.assigned if spec.fresh == "assigned" else ctx.queued
        scenes.update(zip(allowed, ctx.pool.map(lambda _: make(), allowed)))
    problems = []
    for p in order:
        expected = spec.expect[p]
        scene = scenes[p]
        socket = scene.customer if p == "customer" else ctx.ws[p]
        reply = _send(socket, spec.frame(scene, p))
        if expected.startswith("!"):
            if reply.get("type") != "error" or reply.get("code") != expected[1:]:
                problems.append(f"{name} as {p}: expected error {expected[1:]}, got {reply}")
            continue
        if reply.get("type") != expected:
            problems.append(f"{name} as {p}: expected {expected}, got {reply}")
            continue
        text = json.dumps(reply, ensure_ascii=False)
        secrets_ = ctx.foreign_secrets if p in FOREIGN else ctx.customer_secrets if p == "other_customer" else set()
        leaked = sorted(s for s in secrets_ if s in text)
        if leaked:
            problems.append(f"{name} as {p}: the reply shows another's ids {leaked}: {text[:300]}")
        if spec.check is not None:
            try:
                spec.check(p, reply)
            except AssertionError as wrong:
                problems.append(f"{name} as {p}: {wrong}")
    assert not problems, "\n".join(problems)
