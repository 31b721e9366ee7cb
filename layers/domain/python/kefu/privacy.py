"""Data protection (issue 8): retention settings, anonymous consultation, and a customer's data export and
deletion (PIPL art. 45 / 47, GDPR art. 15 / 17 / 20).

Plain Python: the stored data is reached through a port (adapters/customer_data.py implements it), closing an
open conversation through the router, the knowledge base through its store. What a customer leaves behind:

- conversations (META with name and tags, messages, votes on bot answers, the CSAT rating in META, dedup and
  fan-out items, the open-conversation pointer) and the files attached to them (S3, "{ws}/{conversation}/");
- tickets created for them (with comments and history);
- business events, the seen / converted markers and each experiment's exposure and conversion of them;
- their sockets, rate-limit counters and queue entries;
- what the bot kept of their questions: unanswered questions (redacted, no id) and questions that agents
  saved into knowledge-base articles (redacted, tagged "saved-by-agent"): matched by their redacted text.

Aggregates without identity stay: hourly counters, analytics aggregates, experiments' per-variant counts,
handle-time totals. A WeChat customer's id is "wx:{openid}": the mapping is the id itself, nothing else holds it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from . import tokens
from .errors import InvalidRequest
from .models import now_iso

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 365
MIN_RETENTION_DAYS = 1
MAX_RETENTION_DAYS = 5 * 366  # five years
SAVED_TAG = "saved-by-agent"  # bot.Bot._save: articles made from a customer's question
# META attributes that are keys and bookkeeping, not the customer's data
_INTERNAL = {"pk", "sk", "kind", "customerKey", "listKey", "agentKey", "queueKey", "suggestionId", "expiresAt"}

# Revoking a customer's tokens at erasure. An erasure is recorded (the Directory item "{ws}" / "ERASED#{digest}",
# adapters/dynamodb.py: the time, never the id) when it starts and again when it ends; a visitor token of that
# customer issued at or before the recorded time is refused at $connect (ws_authorizer) and by every REST route
# that takes a visitor token (its renewal included). Tokens carry their issue time in whole seconds, so a token
# issued in the erasure's second is refused too; one issued later (a new visit, the integrator's backend signing
# the same customer id again) is a new start. The record outlives every token it could refuse (tokens.MAX_TTL_S),
# then DynamoDB's TTL removes it.
ERASURE_KEEP_S = tokens.MAX_TTL_S + 86400


def customer_digest(workspace: str, customer_id: str) -> str:
    """How records that outlive an erasure name the customer (the audit log, the erasure record): a digest that
    one holding the id can recompute, never the id."""
    import hashlib

    return hashlib.sha256(f"{workspace}\n{customer_id}".encode()).hexdigest()[:32]


def token_revoked(issued_at: int | None, erased_at: int | None) -> bool:
    """Whether a customer's token issued at `issued_at` (its iat, whole seconds) is refused because the customer
    was erased at `erased_at` (whole seconds, or None: never). The same second counts as before the erasure; a
    token without an issue time is refused once there was an erasure."""
    if erased_at is None:
        return False
    return issued_at is None or issued_at <= erased_at


REVEAL_ROLES = ("agent", "supervisor", "admin")  # who may see a masked message's original (kefu.pii)
_SETTINGS = {"retentionDays", "anonymous", "maskPii", "piiRevealRole"}


@dataclass(frozen=True)
class PrivacySettings:
    retention_days: int = DEFAULT_RETENTION_DAYS
    anonymous: bool = False  # anonymous consultation: no name or tags stored, only the random customer id
    # customers' messages are stored with personal data masked (kefu.pii); the originals are sealed with the PII
    # key and shown to staff of at least piiRevealRole ("agent": the conversation's agent too), each time audited
    mask_pii: bool = False
    pii_reveal_role: str = "supervisor"

    @classmethod
    def parse(cls, stored: dict | None) -> PrivacySettings:
        """Stored settings, leniently (a damaged value falls back to the default)."""
        stored = stored or {}
        days = stored.get("retentionDays")
        if not isinstance(days, int) or isinstance(days, bool) or not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
            days = DEFAULT_RETENTION_DAYS
        role = stored.get("piiRevealRole")
        return cls(retention_days=days, anonymous=stored.get("anonymous") is True,
                   mask_pii=stored.get("maskPii") is True,
                   pii_reveal_role=role if role in REVEAL_ROLES else "supervisor")

    @classmethod
    def validate(cls, body: dict) -> PrivacySettings:
        """A PUT body; fields left out keep their defaults. InvalidRequest names what is wrong."""
        unknown = set(body) - _SETTINGS
        if unknown:
            raise InvalidRequest(f"unknown settings: {', '.join(sorted(unknown))}")
        days = body.get("retentionDays", DEFAULT_RETENTION_DAYS)
        if not isinstance(days, int) or isinstance(days, bool) or not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
            raise InvalidRequest(f"retentionDays: a whole number of days, {MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS}",
                                 details=[{"field": "retentionDays", "problem": "out of range"}])
        for flag in ("anonymous", "maskPii"):
            if not isinstance(body.get(flag, False), bool):
                raise InvalidRequest(f"{flag}: true or false", details=[{"field": flag, "problem": "not a boolean"}])
        role = body.get("piiRevealRole", "supervisor")
        if role not in REVEAL_ROLES:
            raise InvalidRequest(f"piiRevealRole: one of {', '.join(REVEAL_ROLES)}",
                                 details=[{"field": "piiRevealRole", "problem": "unknown role"}])
        return cls(retention_days=days, anonymous=body.get("anonymous", False), mask_pii=body.get("maskPii", False),
                   pii_reveal_role=role)

    def public(self) -> dict:
        return {"retentionDays": self.retention_days, "anonymous": self.anonymous, "maskPii": self.mask_pii,
                "piiRevealRole": self.pii_reveal_role}

    def may_reveal(self, role: str, *, assigned: bool) -> bool:
        """Whether staff of this role see the originals of masked messages (assigned: the conversation's agent)."""
        if role == "admin" or (role == "supervisor" and self.pii_reveal_role != "admin"):
            return True
        return role == "agent" and self.pii_reveal_role == "agent" and assigned


class CustomerDataPort(Protocol):
    conversations_table: str
    connections_table: str
    directory_table: str
    metrics_table: str

    def conversation_ids(self, workspace: str, customer_id: str) -> list[str]: ...
    def conversation_items(self, workspace: str, conversation_id: str) -> list[dict]: ...
    def open_pointer(self, workspace: str, customer_id: str) -> dict | None: ...
    def connections(self, workspace: str, customer_id: str) -> list[dict]: ...
    def tickets(self, workspace: str, customer_id: str) -> list[dict]: ...
    def business_events(self, workspace: str, customer_id: str) -> list[dict]: ...
    def markers(self, workspace: str, customer_id: str, experiment_ids: list[str]) -> list[dict]: ...
    def experiment_ids(self, workspace: str) -> list[str]: ...
    def queue_entries(self, workspace: str, customer_id: str) -> list[dict]: ...
    def rate_counters(self, workspace: str, customer_id: str) -> list[dict]: ...
    def misses(self, workspace: str) -> list[dict]: ...
    def attachment_objects(self, workspace: str, conversation_id: str) -> list[dict]: ...
    def delete_objects(self, keys: list[str]) -> int: ...
    def delete_items(self, table: str, items: list[dict]) -> int: ...
    def delete_conversation(self, workspace: str, items: list[dict]) -> int: ...
    def delete_ticket(self, ticket: dict) -> int: ...


class DeletionIncomplete(Exception):
    """Some of the customer's data could not be deleted; `report` says what was and what remains."""

    def __init__(self, report: dict):
        super().__init__("deletion incomplete: " + ", ".join(report["remaining"]))
        self.report = report


class PrivacyService:
    def __init__(self, data: CustomerDataPort, *, close: Callable[[str, str], None] | None = None,
                 disconnect: Callable[[str], None] | None = None, knowledge=None,
                 link: Callable[[str], str | None] | None = None,
                 revoke: Callable[[str, str, int], None] | None = None,
                 unmask: Callable[[str, str, str, dict], str] | None = None):
        self.data = data
        self.close = close  # (workspace, conversation_id): close an open conversation (participants are told)
        self.disconnect = disconnect  # (connection_id): close a socket (@connections DELETE)
        self.knowledge = knowledge  # the knowledge store (list_articles, put_article), for saved questions
        self.link = link  # key -> a short-lived download link, for the export
        # (workspace, customer_id, erased_at: whole seconds): record the erasure, which refuses the customer's tokens
        # issued at or before it (token_revoked)
        self.revoke = revoke
        # (workspace, conversation_id, stored text, its "pii" record) -> the text as the customer wrote it: an export
        # gives the customer their own data whole, also where the workspace stores it masked (kefu.pii)
        self.unmask = unmask

    # ------------------------------------------------------------ export

    def _message(self, workspace: str, conversation_id: str, item: dict) -> dict:
        record = item.get("pii")
        if isinstance(record, str):
            import json

            record = json.loads(record)
        if not record or self.unmask is None:
            return _message(item)
        return _message(item, self.unmask(workspace, conversation_id, item.get("text", ""), record))

    def export(self, workspace: str, customer_id: str) -> dict | None:
        """Everything held about the customer in the workspace; None when nothing is."""
        conversations = []
        names, tags, channels = [], [], []
        for conversation_id in self.data.conversation_ids(workspace, customer_id):
            items = self.data.conversation_items(workspace, conversation_id)
            meta = next((i for i in items if i.get("sk") == "META"), None)
            if meta is None:
                continue
            for value, seen in ((meta.get("customerName"), names), (meta.get("channel"), channels)):
                if value and value not in seen:
                    seen.append(value)
            tags += [t for t in meta.get("customerTags") or () if t not in tags]
            objects = self.data.attachment_objects(workspace, conversation_id)
            conversations.append({
                **{k: v for k, v in meta.items() if k not in _INTERNAL and k not in ("bot", "routing", "suggestion")},
                "messages": [self._message(workspace, conversation_id, i)
                             for i in sorted(items, key=lambda i: i["sk"]) if i["sk"].startswith("MSG#")],
                "ratings": [{"seq": int(i["sk"][5:]), "helpful": i.get("helpful"), "articleId": i.get("articleId"),
                             "ratedAt": i.get("ratedAt")} for i in items if i["sk"].startswith("RATE#")],
                "attachments": [{**o, "url": self.link(o["key"]) if self.link else None} for o in objects],
            })
        tickets = [_ticket(t) for t in self.data.tickets(workspace, customer_id)]
        events = [{k: v for k, v in e.items() if k not in ("pk", "sk", "expiresAt")}
                  for e in self.data.business_events(workspace, customer_id)]
        markers = self.data.markers(workspace, customer_id, self.data.experiment_ids(workspace))
        connections = self.data.connections(workspace, customer_id)
        if not (conversations or tickets or events or markers):
            return None
        for ticket in tickets:
            if ticket.get("customerName") and ticket["customerName"] not in names:
                names.append(ticket["customerName"])
        return {
            "workspace": workspace, "customerId": customer_id, "exportedAt": now_iso(),
            "profile": {"customerId": customer_id, "names": names, "tags": tags, "channels": channels,
                        "wechatOpenId": customer_id[3:] if customer_id.startswith("wx:") else None,
                        "contacts": sorted({t["contact"] for t in tickets if t.get("contact")}),
                        "openConnections": len(connections)},
            "conversations": conversations,
            "tickets": tickets,
            "businessEvents": events,
            "experiments": [_marker(m) for m in markers],
        }

    # ------------------------------------------------------------ deletion

    def delete(self, workspace: str, customer_id: str) -> dict:
        """Delete everything held about the customer in the workspace and revoke their tokens (recorded before and
        after: token_revoked). Idempotent: nothing left is no error.
        Each part is tried even when another failed; DeletionIncomplete reports what remains (a retry
        finds it again: index-bearing items go last)."""
        counts = {k: 0 for k in ("conversations", "messages", "conversationItems", "attachments", "tickets",
                                 "ticketComments", "businessEvents", "experimentRecords", "connections",
                                 "rateCounters", "queueEntries", "unansweredQuestions", "savedQuestions")}
        remaining: list[str] = []

        def attempt(part: str, work: Callable[[], None]) -> bool:
            try:
                work()
                return True
            except Exception:  # noqa: BLE001 - reported, and the rest still goes
                log.exception("customer data deletion: a part failed", extra={"part": part})
                remaining.append(part)
                return False

        # 0. the customer's tokens stop working first, so that a dropped socket cannot come back while the data goes
        revoke = self.revoke
        if revoke is not None:
            attempt("tokens", lambda: revoke(workspace, customer_id, int(time.time())))
        conversation_ids = self.data.conversation_ids(workspace, customer_id)
        # 1. stop the conversation: an open one is closed (the agent and the customer are told), sockets dropped
        for conversation_id in conversation_ids:
            attempt(f"close:{conversation_id}", lambda cid=conversation_id: self._close(workspace, cid))

        def sockets() -> None:
            items = self.data.connections(workspace, customer_id)
            for item in items:
                if self.disconnect is not None:
                    try:
                        self.disconnect(item["sk"])
                    except Exception:  # noqa: BLE001 - gone already, or the gateway slow: the item goes anyway
                        log.warning("could not close a deleted customer's socket")
            counts["connections"] += self.data.delete_items(self.data.connections_table, items)
        attempt("connections", sockets)

        # 2. the conversations, with their files (files first: their keys come from the conversation)
        texts: set[str] = set()
        for conversation_id in conversation_ids:
            def one(cid=conversation_id) -> None:
                items = self.data.conversation_items(workspace, cid)
                texts.update(_customer_texts(items, customer_id))
                keys = [o["key"] for o in self.data.attachment_objects(workspace, cid)]
                counts["attachments"] += self.data.delete_objects(keys) if keys else 0
                counts["messages"] += sum(1 for i in items if i["sk"].startswith("MSG#"))
                counts["conversationItems"] += self.data.delete_conversation(workspace, items)
                counts["conversations"] += 1
            attempt(f"conversation:{conversation_id}", one)

        def pointer() -> None:
            found = self.data.open_pointer(workspace, customer_id)
            if found:
                counts["conversationItems"] += self.data.delete_items(self.data.conversations_table, [found])
        attempt("openConversation", pointer)

        def queue() -> None:
            counts["queueEntries"] += self.data.delete_items(self.data.directory_table,
                                                             self.data.queue_entries(workspace, customer_id))
        attempt("queue", queue)

        def counters() -> None:
            counts["rateCounters"] += self.data.delete_items(self.data.connections_table,
                                                             self.data.rate_counters(workspace, customer_id))
        attempt("rateCounters", counters)

        # 3. tickets
        for ticket in self.data.tickets(workspace, customer_id):
            def drop(t=ticket) -> None:
                self.data.delete_ticket(t)
                counts["tickets"] += 1
                counts["ticketComments"] += len(t.get("comments", []))
            attempt(f"ticket:{ticket['pk'].split('#T#', 1)[-1]}", drop)

        # 4. business events, experiments' exposures and conversions, the seen / converted markers
        def events() -> None:
            found = self.data.business_events(workspace, customer_id)
            counts["businessEvents"] += self.data.delete_items(self.data.metrics_table, found)
            markers = self.data.markers(workspace, customer_id, self.data.experiment_ids(workspace))
            counts["experimentRecords"] += self.data.delete_items(self.data.metrics_table, markers)
        attempt("events", events)

        # 5. what the bot kept of their questions (redacted text, no id: matched by text)
        if texts:
            from .answering.signals import redact

            redacted = {redact(t)[:500] for t in texts} - {""}
            attempt("unansweredQuestions", lambda: self._forget_misses(workspace, redacted, counts))
            if self.knowledge is not None:
                attempt("savedQuestions", lambda: self._forget_saved(workspace, redacted, counts))

        # 6. and again at the end: a token issued while the deletion ran is refused as well
        if revoke is not None and "tokens" not in remaining:
            attempt("tokens", lambda: revoke(workspace, customer_id, int(time.time())))

        report = {"workspace": workspace, "customerId": customer_id, "deleted": counts,
                  "complete": not remaining, "remaining": remaining}
        if remaining:
            raise DeletionIncomplete(report)
        return report

    def _close(self, workspace: str, conversation_id: str) -> None:
        items = self.data.conversation_items(workspace, conversation_id)
        meta = next((i for i in items if i.get("sk") == "META"), None)
        if meta is None or meta.get("status") == "closed" or self.close is None:
            return
        self.close(workspace, conversation_id)

    def _forget_misses(self, workspace: str, redacted: set[str], counts: dict) -> None:
        found = [m for m in self.data.misses(workspace) if (m.get("miss") or {}).get("text") in redacted]
        counts["unansweredQuestions"] += self.data.delete_items(self.data.metrics_table, found)

    def _forget_saved(self, workspace: str, redacted: set[str], counts: dict) -> None:
        """Questions saved into articles by agents (bot._save): dropped from the article (the answer, the
        agent's text, stays as knowledge-base content); a title that was the question becomes the answer's start."""
        for article in self.knowledge.list_articles(workspace):
            if SAVED_TAG not in article.tags:
                continue
            questions = tuple(q for q in article.questions if q not in redacted)
            title = article.title if article.title not in redacted else (article.answer[:80] or article.id)
            if questions != tuple(article.questions) or title != article.title:
                self.knowledge.put_article(replace(article, questions=questions, title=title, updated_at=now_iso()))
                counts["savedQuestions"] += len(article.questions) - len(questions) or 1


def _customer_texts(items: list[dict], customer_id: str) -> set[str]:
    return {i.get("text") or "" for i in items
            if i["sk"].startswith("MSG#") and i.get("senderRole") == "customer" and i.get("senderId") == customer_id}


def _message(item: dict, text: str | None = None) -> dict:
    meta = item.get("meta") or {}
    if isinstance(meta, str):
        import json

        meta = json.loads(meta)
    out = {"seq": int(item.get("seq", 0)), "clientMessageId": item.get("clientMessageId"),
           "sender": {"role": item.get("senderRole"), "id": item.get("senderId"), "name": item.get("senderName", "")},
           "text": item.get("text", "") if text is None else text, "createdAt": item.get("createdAt"),
           "channel": item.get("channel") or "web"}
    if meta.get("attachments"):
        out["attachments"] = meta["attachments"]
    return out


def _ticket(item: dict) -> dict:
    out = {k: v for k, v in item.items() if k not in ("pk", "sk", "listKey", "customerKey", "comments", "version")}
    out["ticketId"] = item["pk"].split("#T#", 1)[-1]
    out["comments"] = [{k: c[k] for k in ("commentId", "author", "text", "internal", "createdAt") if k in c}
                       for c in item.get("comments", [])]
    return out


def _marker(item: dict) -> dict:
    pk, sk = item["pk"], item["sk"]
    if pk.endswith("#SEEN"):
        return {"type": "seen", "at": item.get("at")}
    if pk.endswith("#BUY"):
        return {"type": "converted", "at": item.get("at"), "eventId": item.get("eventId")}
    experiment_id = pk.split("#EXP#", 1)[-1]
    kind = "exposure" if sk.startswith("X#") else "conversion"
    return {"type": kind, "experimentId": experiment_id, "variant": item.get("variant"), "at": item.get("at"),
            **({"eventId": item["eventId"]} if item.get("eventId") else {})}
