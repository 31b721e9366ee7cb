"""Conversation use cases: connect, send, sync, typing, route and hand off.

Pure domain logic over the ports in ports.py. Every method takes the caller's Principal
(established by the token at $connect) and refuses anything outside the caller's
workspace or conversations with the same NotFound an unknown id gets.
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Iterable

from .errors import Busy, ConversationClosed, Forbidden, InvalidFrame, NoAgentAvailable, NotFound
from .models import Agent, ConnectionRef, Conversation, Message, Principal, new_id, now_iso
from .ports import AssignConflict, ConversationAlreadyOpen, DuplicateMessage, Notifier, SeqConflict, Store

if TYPE_CHECKING:  # frames (pydantic) only types the arguments; $connect and $disconnect never load it
    from . import frames

log = logging.getLogger(__name__)

MAX_SEQ_RETRIES = 30  # each lost race means another writer won: progress is guaranteed
HISTORY_ON_ASSIGN = 200
SYSTEM = {"role": "system", "id": "system", "name": "kefu"}


class ConversationService:
    def __init__(self, store: Store, notifier: Notifier, *, fanout_threads: int = 8):
        self.store = store
        self.notifier = notifier
        self._pool = ThreadPoolExecutor(max_workers=fanout_threads) if fanout_threads > 1 else None

    # ------------------------------------------------------------ connections

    def connect(self, who: Principal, connection_id: str) -> None:
        if who.role == "customer":
            open_id = self.store.open_conversation_id(who.workspace, who.id)
            conversation_ids = [open_id] if open_id else []
        else:
            self.store.agent_connections_changed(who.workspace, who.id, +1)
            conversation_ids = [c.id for c in self.store.open_conversations_of_agent(who.workspace, who.id)]
        self.store.add_connection(who, connection_id, conversation_ids)

    def disconnect(self, who: Principal, connection_id: str) -> None:
        self.store.remove_connection(who, connection_id)
        if who.role == "agent":
            self.store.agent_connections_changed(who.workspace, who.id, -1)

    # ------------------------------------------------------------ messages

    def send_message(self, who: Principal, connection_id: str, frame: frames.MessageFrame) -> dict:
        """Store the message durably, then fan it out; returns the ack for the sender.

        A resend with the same clientMessageId returns the original ack and stores nothing.
        """
        conversation_id, opened = frame.conversationId, None
        if conversation_id is None:
            if who.role != "customer":
                raise InvalidFrame("conversationId is required", client_message_id=frame.clientMessageId)
            conversation_id, opened = self._open_conversation(who)

        for attempt in range(MAX_SEQ_RETRIES):
            conversation, connections = self.store.load_for_fanout(who.workspace, conversation_id)
            self._check_can_write(who, conversation, frame.clientMessageId)
            message = Message(
                conversation_id=conversation.id,
                seq=conversation.last_seq + 1,
                client_message_id=frame.clientMessageId,
                sender=who.sender(),
                text=frame.text,
                created_at=now_iso(),
            )
            try:
                self.store.append_message(conversation, message, who.key)
                break
            except DuplicateMessage:
                original = self.store.find_message(who.workspace, conversation.id, who.key, frame.clientMessageId)
                return _ack(original or message)
            except SeqConflict:
                _backoff(attempt)
        else:
            raise Busy("too many messages at once; resend with the same clientMessageId",
                       client_message_id=frame.clientMessageId)

        self._fan_out(conversation, connections, message.frame(), exclude=connection_id)
        if opened is not None:
            self._after_open(opened)
        return _ack(message)

    def typing(self, who: Principal, connection_id: str, frame: frames.TypingFrame) -> dict:
        conversation, connections = self.store.load_for_fanout(who.workspace, frame.conversationId)
        self._check_can_write(who, conversation)
        event = {"type": "typing", "conversationId": conversation.id, "sender": who.sender(), "typing": frame.typing}
        self._fan_out(conversation, connections, event, exclude=connection_id)
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
        else:
            open_id = self.store.open_conversation_id(who.workspace, who.id)
            found = self.store.get_conversation(who.workspace, open_id) if open_id else None
            conversations = [found] if found else []
        return {"type": "inbox", "conversations": [_summary(c) for c in conversations]}

    def post_system_message(self, conversation: Conversation, text: str) -> Message:
        """A message from kefu itself (someone joined, a transfer), stored and sequenced like any other."""
        for attempt in range(MAX_SEQ_RETRIES):
            fresh, connections = self.store.load_for_fanout(conversation.workspace, conversation.id)
            message = Message(conversation.id, fresh.last_seq + 1, new_id("sys"), SYSTEM, text, now_iso())
            try:
                self.store.append_message(fresh, message, "system")
            except SeqConflict:
                _backoff(attempt)
                continue
            self._fan_out(fresh, connections, message.frame())
            return message
        raise Busy("could not post the system message; the conversation is very busy")

    # ------------------------------------------------------------ routing (simple; see issue 3)

    def route(self, who: Principal, conversation_id: str) -> dict:
        conversation = self._readable(who, conversation_id)
        if conversation.status == "closed":
            raise ConversationClosed("the conversation is closed")
        if conversation.agent_id:
            return _routed(conversation, "already assigned")
        agent = self._assign_first_available(conversation, self.store.list_agents(who.workspace), None)
        if agent is None:
            raise NoAgentAvailable("no agent is available right now; your messages are kept")
        reason = f"least busy online agent ({agent.load}/{agent.max_concurrent} open)"
        self._joined(conversation, agent, reason=reason, note="")
        return _routed(conversation, reason)

    def handoff(self, who: Principal, frame: frames.HandoffFrame) -> dict:
        if who.role != "agent":
            raise Forbidden("only agents can transfer a conversation")
        conversation = self.store.get_conversation(who.workspace, frame.conversationId)
        if conversation is None:
            raise NotFound("no such conversation")
        if conversation.agent_id != who.id:  # a colleague's conversation (supervisors: issue 3)
            raise Forbidden("you can only transfer conversations assigned to you")
        if conversation.status == "closed":
            raise ConversationClosed("the conversation is closed")
        target = frame.to
        if target.agentId is not None:
            if target.agentId == who.id:
                raise InvalidFrame("to.agentId: you cannot transfer a conversation to yourself")
            agent = self.store.get_agent(who.workspace, target.agentId)
            if agent is None:
                raise NotFound(f"no agent {target.agentId!r} in this workspace")
            candidates = [agent]
        else:
            agents = [a for a in self.store.list_agents(who.workspace) if target.group in a.groups]
            if not agents:
                raise NotFound(f"no group {target.group!r} in this workspace")
            candidates = [a for a in agents if a.id != who.id]
        chosen = self._assign_first_available(conversation, candidates, who.id)
        if chosen is None:
            raise NoAgentAvailable("nobody there can take the conversation right now; it stays with you")
        self.store.detach(who.workspace, conversation.id, self.store.connections_of(who.workspace, "agent", who.id))
        self._joined(conversation, chosen, reason=f"transferred by {who.name or who.id}", note=frame.note)
        return {
            "type": "handoff",
            "conversationId": conversation.id,
            "to": {"agentId": chosen.id, "name": chosen.name},
            "status": "transferred",
        }

    # ------------------------------------------------------------ internals

    def _open_conversation(self, who: Principal) -> tuple[str, Conversation | None]:
        existing = self.store.open_conversation_id(who.workspace, who.id)
        if existing:
            return existing, None
        conversation = Conversation(
            workspace=who.workspace,
            id=new_id("c"),
            customer_id=who.id,
            customer_name=who.name,
            customer_tags=who.tags,
        )
        try:
            self.store.create_conversation(conversation, self.store.connections_of(who.workspace, "customer", who.id))
        except ConversationAlreadyOpen as race:  # another tab opened it a moment ago
            return race.conversation_id, None
        return conversation.id, conversation

    def _after_open(self, conversation: Conversation) -> None:
        """A new conversation goes to a human at once while the workspace has no bot (issue 4 adds the bot)."""
        customer = Principal(conversation.workspace, "customer", conversation.customer_id, conversation.customer_name)
        try:
            routed = self.route(customer, conversation.id)
        except NoAgentAvailable:
            customer = self.store.connections_of(conversation.workspace, "customer", conversation.customer_id)
            notice = {
                "type": "routing",
                "conversationId": conversation.id,
                "status": "waiting",
                "message": "No agent is available right now; your messages are kept.",
            }
            self._send_all(customer, notice)
        else:
            self._send_all(self.store.connections_of(customer.workspace, "customer", customer.id), routed)

    def _assign_first_available(
        self, conversation: Conversation, agents: Iterable[Agent], previous_agent_id: str | None
    ) -> Agent | None:
        ranked = sorted((a for a in agents if a.available), key=lambda a: (a.load / a.max_concurrent, a.load, a.id))
        for agent in ranked:
            try:
                self.store.assign(conversation, agent, previous_agent_id)
            except AssignConflict:
                fresh = self.store.get_conversation(conversation.workspace, conversation.id)
                if fresh is None or fresh.agent_id != previous_agent_id:
                    return None  # someone else routed or transferred it meanwhile
                continue
            conversation.agent_id, conversation.agent_name, conversation.status = agent.id, agent.name, "assigned"
            return agent
        return None

    def _joined(self, conversation: Conversation, agent: Agent, *, reason: str, note: str) -> None:
        agent_connections = self.store.connections_of(conversation.workspace, "agent", agent.id)
        self.store.attach(conversation.workspace, conversation.id, agent_connections)
        self.post_system_message(conversation, f"{agent.name or agent.id} joined the conversation")
        history = self.store.last_messages(conversation.workspace, conversation.id, HISTORY_ON_ASSIGN)
        assigned = {
            "type": "assigned",
            "conversationId": conversation.id,
            "customer": conversation.customer(),
            "history": [m.public() for m in history],
            "lastSeq": history[-1].seq if history else 0,
            "historyComplete": not history or history[0].seq == 1,
            "reason": reason,
        }
        if note:
            assigned["note"] = note
        self._send_all(agent_connections, assigned)

    def _readable(self, who: Principal, conversation_id: str) -> Conversation:
        conversation = self.store.get_conversation(who.workspace, conversation_id)
        if conversation is None or not conversation.is_participant(who):
            raise NotFound("no such conversation")
        return conversation

    def _check_can_write(self, who: Principal, conversation: Conversation | None, cmid: str | None = None) -> None:
        if conversation is None or not conversation.is_participant(who):
            raise NotFound("no such conversation", client_message_id=cmid)
        if conversation.status == "closed":
            raise ConversationClosed("the conversation is closed", client_message_id=cmid)

    def _fan_out(
        self, conversation: Conversation, connections: list[ConnectionRef], frame: dict, exclude: str | None = None
    ) -> None:
        targets = [c for c in connections if c.connection_id != exclude]
        gone = [c for c, ok in zip(targets, self._deliver(targets, frame)) if not ok]
        if gone:
            self.store.detach(conversation.workspace, conversation.id, gone, forget=True)

    def _send_all(self, connections: list[ConnectionRef], frame: dict) -> None:
        self._deliver(connections, frame)

    def _deliver(self, targets: list[ConnectionRef], frame: dict) -> list[bool]:
        if len(targets) <= 1 or self._pool is None:
            return [self.notifier.send(c.connection_id, frame) for c in targets]
        return list(self._pool.map(lambda c: self.notifier.send(c.connection_id, frame), targets))


def _backoff(attempt: int) -> None:
    """Full jitter, capped: spreads racing writers apart without slowing the common case."""
    time.sleep(random.uniform(0, min(0.1, 0.002 * 2**attempt)))


def _ack(message: Message) -> dict:
    return {
        "type": "ack",
        "clientMessageId": message.client_message_id,
        "conversationId": message.conversation_id,
        "seq": message.seq,
        "createdAt": message.created_at,
    }


def _summary(conversation: Conversation) -> dict:
    return {
        "conversationId": conversation.id,
        "status": conversation.status,
        "customer": conversation.customer(),
        "agent": {"id": conversation.agent_id, "name": conversation.agent_name} if conversation.agent_id else None,
        "lastSeq": conversation.last_seq,
        "openedAt": conversation.opened_at,
        "channel": conversation.channel,
    }


def _routed(conversation: Conversation, reason: str) -> dict:
    return {
        "type": "routed",
        "conversationId": conversation.id,
        "status": conversation.status,
        "agent": {"id": conversation.agent_id, "name": conversation.agent_name},
        "reason": reason,
    }
