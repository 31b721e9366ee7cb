"""Conversation use cases: connect, send, sync, typing and inbox.

Pure domain logic over the ports in ports.py. Every method takes the caller's Principal
(established by the token at $connect) and refuses anything outside the caller's
workspace or conversations with the same NotFound an unknown id gets. Who gets a human
and when is the Router's business (router.py).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable

from . import pii
from .delivery import MAX_SEQ_RETRIES, Delivery, backoff
from .errors import Busy, ConversationClosed, InvalidFrame, NotFound
from .models import Conversation, Message, Principal, new_id, now_iso
from .ports import ConversationAlreadyOpen, DuplicateMessage, PiiVault, SeqConflict, Store

if TYPE_CHECKING:  # frames (pydantic) only types the arguments; $connect and $disconnect never load it
    from . import frames
    from .attachments import AttachmentStore
    from .channels import Inbound
    from .bot import Bot
    from .router import Router

log = logging.getLogger(__name__)

EXPERIMENTS_TTL_S = 15.0  # how long a started or stopped routing experiment may take to reach warm containers


class ConversationService:
    def __init__(self, store: Store, delivery: Delivery, router: Router, bot: Bot | None = None,
                 attachments: AttachmentStore | None = None, experiments=None,
                 experiments_ttl_s: float = EXPERIMENTS_TTL_S, vault: PiiVault | None = None):
        self.store = store
        self.delivery = delivery
        self.router = router
        self.bot = bot
        self.attachments = attachments  # where uploaded files are checked (None: messages carry none)
        # the A/B experiment store (adapters/experiment_store.py: list, expose), for bot-first vs. human-first
        self.experiments = experiments
        self.experiments_ttl_s = experiments_ttl_s
        self._experiments: dict[str, tuple[float, list]] = {}
        self.vault = vault  # seals what masking takes out of customers' messages (None: nothing is masked)

    # ------------------------------------------------------------ connections

    def connect(self, who: Principal, connection_id: str) -> None:
        if who.role == "customer":
            open_id = self.store.open_conversation_id(who.workspace, who.id)
            conversation_ids = [open_id] if open_id else []
        else:
            conversation_ids = [c.id for c in self.store.open_conversations_of_agent(who.workspace, who.id)]
        self.store.add_connection(who, connection_id, conversation_ids)
        if who.role == "agent":
            self.router.agent_connected(who)

    def disconnect(self, who: Principal, connection_id: str) -> None:
        self.store.remove_connection(who, connection_id)
        if who.role == "agent":
            self.router.agent_disconnected(who)
        else:
            self.router.customer_disconnected(who)

    # ------------------------------------------------------------ messages

    def send_message(self, who: Principal, connection_id: str, frame: frames.MessageFrame) -> dict:
        """Store the message durably, fan it out, and do what it sets in motion (routing a new
        conversation, the bot's turn); returns the ack for the sender.

        A resend with the same clientMessageId returns the original ack and stores nothing.
        """
        ack, then = self.accept_message(who, connection_id, frame)
        if then is not None:
            then()
        return ack

    def accept_message(self, who: Principal, connection_id: str | None,
                       frame: frames.MessageFrame, channel: str = "web") -> tuple[dict, Callable[[], None] | None]:
        """Store the message durably and fan it out; returns the ack and what remains to do (route the new
        conversation, or the bot's turn), so the WebSocket handler can ack before doing it."""
        conversation_id, opened = frame.conversationId, None
        if frame.attachments and conversation_id is None:  # files are uploaded into an existing conversation
            raise InvalidFrame("conversationId is required with attachments (the one of the upload tickets)",
                               client_message_id=frame.clientMessageId)
        if conversation_id is None:
            if who.role != "customer":
                raise InvalidFrame("conversationId is required", client_message_id=frame.clientMessageId)
            conversation_id, opened = self._open_conversation(who, frame, channel)

        attached: list[dict] | None = None
        tapped = self._quick_reply_meta(who, frame)
        text, sealed, redacted = frame.text, None, False
        for attempt in range(MAX_SEQ_RETRIES):
            conversation, connections = self.store.load_for_fanout(who.workspace, conversation_id)
            self._check_can_write(who, conversation, frame.clientMessageId)
            if frame.attachments and attached is None:
                attached = self._check_attachments(conversation, frame)
            if conversation.mask_pii and who.role == "customer" and not redacted:
                (text, sealed), redacted = self._redact(conversation, frame), True
            message = Message(
                conversation_id=conversation.id,
                seq=conversation.last_seq + 1,
                client_message_id=frame.clientMessageId,
                sender=who.sender(),
                text=text,
                created_at=now_iso(),
                # what was attached, as checked: stored in meta, fanned out, synced and listed as "attachments"
                meta={**({"attachments": attached} if attached else {}), **tapped} or None,
                channel=channel,
                pii=sealed,
            )
            try:
                self.store.append_message(conversation, message, who.key)
                break
            except DuplicateMessage:
                original = self.store.find_message(who.workspace, conversation.id, who.key, frame.clientMessageId)
                return _ack(original or message), None
            except SeqConflict:
                backoff(attempt)
        else:
            raise Busy("too many messages at once; resend with the same clientMessageId",
                       client_message_id=frame.clientMessageId)

        self.delivery.fan_out(conversation, connections, message.frame(), exclude=connection_id)
        # the bot reads text: a message of files only waits for the words that come with them
        if conversation.status == "bot" and who.role == "customer" and self.bot is not None and message.text:
            bot = self.bot
            return _ack(message), lambda: bot.on_customer_message(conversation, message)
        if opened is not None:
            return _ack(message), lambda: self.router.conversation_opened(opened)
        return _ack(message), None

    def receive(self, inbound: Inbound) -> tuple[dict, Callable[[], None] | None]:
        """A customer's message from another channel (REST, WeChat): into the customer's open conversation,
        or a new one, exactly like a widget message (fan-out, the bot's turn, routing). The channel's own
        message id makes a redelivery (WeChat retries after 5 s) the same message."""
        from . import frames

        who = Principal(inbound.workspace, "customer", inbound.customer_id, inbound.customer_name)
        frame = frames.MessageFrame(action="message", clientMessageId=_channel_message_id(inbound),
                                    text=inbound.text)
        open_id = self.store.open_conversation_id(inbound.workspace, inbound.customer_id)
        if open_id:
            frame = frame.model_copy(update={"conversationId": open_id})
        try:
            return self.accept_message(who, None, frame, channel=inbound.channel)
        except ConversationClosed:  # closed between the two reads: the message opens a new one
            return self.accept_message(who, None, frame.model_copy(update={"conversationId": None}),
                                       channel=inbound.channel)

    def typing(self, who: Principal, connection_id: str, frame: frames.TypingFrame) -> dict:
        conversation, connections = self.store.load_for_fanout(who.workspace, frame.conversationId)
        self._check_can_write(who, conversation)
        event = {"type": "typing", "conversationId": conversation.id, "sender": who.sender(), "typing": frame.typing}
        self.delivery.fan_out(conversation, connections, event, exclude=connection_id)
        return {"type": "typing.ok", "conversationId": conversation.id}

    def sync(self, who: Principal, frame: frames.SyncFrame) -> dict:
        conversation = self._readable(who, frame.conversationId)
        page = self.store.messages_after(who.workspace, conversation.id, frame.afterSeq, frame.limit + 1)
        has_more = len(page) > frame.limit
        page = page[: frame.limit]
        return {
            "type": "sync",
            "conversationId": conversation.id,
            "messages": [m.public() for m in page],
            "lastSeq": conversation.last_seq,
            "hasMore": has_more,
            "status": conversation.status,
        }

    def inbox(self, who: Principal) -> dict:
        """The caller's open conversations: an agent's assigned ones, a customer's open one."""
        if who.role == "agent":
            conversations = self.store.open_conversations_of_agent(who.workspace, who.id)
            me = self.store.get_agent(who.workspace, who.id)
            return {"type": "inbox", "conversations": [_summary(c, for_agent=True) for c in conversations],
                    "presence": me.presence if me else "offline"}
        else:
            open_id = self.store.open_conversation_id(who.workspace, who.id)
            found = self.store.get_conversation(who.workspace, open_id) if open_id else None
            conversations = [found] if found else []
        return {"type": "inbox", "conversations": [_summary(c, for_agent=False) for c in conversations]}

    # ------------------------------------------------------------ internals

    def _redact(self, conversation: Conversation, frame: frames.MessageFrame) -> tuple[str, dict | None]:
        """The customer's text as the workspace stores it: personal data masked, the originals sealed (kefu.pii).
        Without the vault nothing can be sealed, so nothing is stored: Busy, and the client resends."""
        redaction = pii.redact(frame.text)
        if not redaction.values:
            return redaction.text, None
        try:
            if self.vault is None:
                raise RuntimeError("no PII vault")
            sealed = self.vault.seal(conversation.workspace, conversation.id, redaction.values)
        except Exception as error:  # noqa: BLE001 - KMS down or throttled: refuse rather than store the values
            log.warning("sealing personal data failed: %s", type(error).__name__)
            raise Busy("could not store the message securely just now; resend with the same clientMessageId",
                       client_message_id=frame.clientMessageId) from None
        return redaction.text, {"spans": [list(span) for span in redaction.spans], "sealed": sealed}

    def _open_conversation(self, who: Principal, frame: frames.MessageFrame,
                           channel: str = "web") -> tuple[str, Conversation | None]:
        cmid = frame.clientMessageId
        if frame.anonymous and not who.anonymous_visitor:  # anonymous consultation chosen by the visitor
            raise InvalidFrame("anonymous: needs an anonymous visitor token (POST /workspaces/{workspace}/"
                               "visitor-tokens without a name): this token names the customer", client_message_id=cmid,
                               details=[{"field": "anonymous", "problem": "the token identifies the customer"}])
        existing = self.store.open_conversation_id(who.workspace, who.id)
        if existing:
            if frame.anonymous:  # never into a conversation that keeps the customer's identity
                found = self.store.get_conversation(who.workspace, existing)
                if found is not None and not found.anonymous:
                    raise InvalidFrame("anonymous: this customer has an open conversation that is not anonymous",
                                       client_message_id=cmid,
                                       details=[{"field": "anonymous", "problem": "an open conversation is not"}])
            return existing, None  # group and language only matter to a new conversation
        if frame.group is not None:
            try:
                self.router.check_group(who.workspace, frame.group)
            except NotFound as unknown:
                raise NotFound(unknown.message, client_message_id=frame.clientMessageId) from None
        conversation = Conversation(
            workspace=who.workspace,
            id=new_id("c"),
            customer_id=who.id,
            customer_name=who.name,
            customer_tags=who.tags,
            group=frame.group,
            language=frame.language,
            channel=channel,
            status="bot" if self.bot is not None and self.bot.takes(who.workspace) else "open",
            anonymous=frame.anonymous,  # the visitor's choice; the workspace's setting may make it anonymous too
        )
        exposure = None
        if conversation.status == "bot":
            exposure = self._routing_experiment(who)
            if exposure is not None and exposure[1].value == "human_first":
                conversation.status = "open"  # straight to the human queue (router.conversation_opened)
        try:
            self.store.create_conversation(conversation, self.store.connections_of(who.workspace, "customer", who.id))
        except ConversationAlreadyOpen as race:  # another tab opened it a moment ago
            return race.conversation_id, None
        if exposure is not None and exposure[0].status == "running":
            try:
                self.experiments.expose(exposure[0], who.id, exposure[1].id, conversation.opened_at,
                                        retention_days=conversation.retention_days)
            except Exception:  # noqa: BLE001 - a lost exposure costs a statistic, not the conversation
                log.exception("could not log the routing experiment's exposure")
        return conversation.id, conversation

    def _listed(self, workspace: str, kinds: tuple[str, ...] = ("routing_mode", "quick_reply_wording")) -> list:
        """The workspace's experiments the message path uses, read at most every experiments_ttl_s per
        workspace and container (may raise: callers fall back to the defaults)."""
        cached = self._experiments.get(workspace)
        if cached is None or time.monotonic() - cached[0] >= self.experiments_ttl_s:
            cached = (time.monotonic(), [e for e in self.experiments.list(workspace) if e.kind in kinds])
            self._experiments[workspace] = cached
        return cached[1]

    def _routing_experiment(self, who: Principal):
        """(experiment, variant) of the routing_mode experiment that decides this customer's new conversation
        (bot first or human first), or None. A failing read falls back to the default (the bot first)."""
        if self.experiments is None:
            return None
        from . import experiments as ab

        try:
            return ab.routing_mode([e for e in self._listed(who.workspace) if e.kind == "routing_mode"], who.id)
        except Exception:  # noqa: BLE001
            log.exception("routing experiments unavailable; the bot takes the conversation")
            return None

    def _quick_reply_meta(self, who: Principal, frame: frames.MessageFrame) -> dict:
        """A customer's tap on a quick reply (kefu.chips): meta.quickReply (the chip's id) and, when a
        quick_reply_wording experiment assigns this visitor a variant (running or rolled out), meta.experiment
        and meta.variant, decided here from the customer id (what the client claims is not trusted)."""
        if who.role != "customer" or not getattr(frame, "quickReply", None):
            return {}
        meta: dict = {"quickReply": frame.quickReply}
        if self.experiments is None:
            return meta
        from . import experiments as ab

        try:
            for experiment in self._listed(who.workspace):
                variant = ab.assign(experiment, who.id) if experiment.kind == "quick_reply_wording" else None
                if variant is not None:
                    return {**meta, "experiment": experiment.id, "variant": variant.id}
        except Exception:  # noqa: BLE001 - a lost tag costs a statistic, not the message
            log.exception("quick-reply experiments unavailable; the message is sent untagged")
        return meta

    def _check_attachments(self, conversation: Conversation, frame: frames.MessageFrame) -> list[dict]:
        """The frame's attachment references, checked against the stored objects; InvalidFrame otherwise."""
        from .attachments import AttachmentError, verify

        cmid = frame.clientMessageId
        if self.attachments is None:
            raise InvalidFrame("attachments are not accepted here", client_message_id=cmid)
        if conversation.channel != "web":  # replies go out as text (WeChat, webhooks): a file would be lost
            raise InvalidFrame(f"attachments reach web and app customers only; this conversation is on "
                               f"{conversation.channel}", client_message_id=cmid)
        try:
            return verify(frame.attachments, conversation.workspace, conversation.id, self.attachments)
        except AttachmentError as refused:
            field = str(refused).split(" ", 1)[0] if str(refused).startswith("attachments.") else "attachments"
            raise InvalidFrame(str(refused), client_message_id=cmid,
                               details=[{"field": field, "problem": str(refused)}]) from None

    def _readable(self, who: Principal, conversation_id: str) -> Conversation:
        """Its customer and its agent read a conversation, and (read only) the workspace's supervisors."""
        conversation = self.store.get_conversation(who.workspace, conversation_id)
        if conversation is None or not (conversation.is_participant(who) or oversees(self.store, who)):
            raise NotFound("no such conversation")
        return conversation

    def _check_can_write(self, who: Principal, conversation: Conversation | None, cmid: str | None = None) -> None:
        if conversation is None or not conversation.is_participant(who):
            raise NotFound("no such conversation", client_message_id=cmid)
        if conversation.status == "closed":
            raise ConversationClosed("the conversation is closed", client_message_id=cmid)


def oversees(store, who: Principal) -> bool:
    """A supervisor or admin of the caller's workspace (the role read from the directory, not the token)."""
    if who.role != "agent":
        return False
    agent = store.get_agent(who.workspace, who.id)
    return agent is not None and agent.role in ("supervisor", "admin")


def _channel_message_id(inbound: Inbound) -> str:
    """The clientMessageId of a channel message: stable per channel message, within the id alphabet."""
    import hashlib

    digest = hashlib.sha256(f"{inbound.channel}:{inbound.external_id}".encode()).hexdigest()[:32]
    return f"{inbound.channel}-{digest}"


def _ack(message: Message) -> dict:
    return {
        "type": "ack",
        "clientMessageId": message.client_message_id,
        "conversationId": message.conversation_id,
        "seq": message.seq,
        "createdAt": message.created_at,
    }


def _summary(conversation: Conversation, *, for_agent: bool) -> dict:
    summary = {
        "conversationId": conversation.id,
        "status": conversation.status,
        "customer": conversation.customer(),
        "agent": {"id": conversation.agent_id, "name": conversation.agent_name} if conversation.agent_id else None,
        "lastSeq": conversation.last_seq,
        "openedAt": conversation.opened_at,
        "channel": conversation.channel,
        "group": conversation.group,
        "priority": conversation.priority,
    }
    if for_agent:  # the bot's unreviewed answer and why it handed over are for the agent's eyes only
        summary["suggestion"] = conversation.suggestion
        summary["note"] = (conversation.routing or {}).get("note")
    return summary
