"""In-memory stand-ins for the ports, with the same conditional semantics as the DynamoDB adapter."""

from __future__ import annotations

import threading
from dataclasses import replace

from kefu.models import Agent, ConnectionRef, Conversation, Message, Principal
from kefu.ports import AssignConflict, ConversationAlreadyOpen, DuplicateMessage, SeqConflict


class MemoryStore:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.agents: dict[tuple[str, str], Agent] = {}
        self.connections: dict[tuple[str, str, str], dict[str, set[str]]] = {}  # (ws, role, user) -> {conn: convs}
        self.conversations: dict[tuple[str, str], Conversation] = {}
        self.fanout: dict[tuple[str, str], dict[str, ConnectionRef]] = {}
        self.messages: dict[tuple[str, str], dict[int, Message]] = {}
        self.dedup: dict[tuple[str, str, str, str], int] = {}
        self.open: dict[tuple[str, str], str] = {}
        self.calls = 0

    def _call(self) -> None:
        self.calls += 1

    # directory
    def put_agent(self, agent: Agent) -> None:
        self.agents[(agent.workspace, agent.id)] = agent

    def get_agent(self, workspace, agent_id):
        self._call()
        return self.agents.get((workspace, agent_id))

    def list_agents(self, workspace):
        self._call()
        return [a for (ws, _), a in sorted(self.agents.items()) if ws == workspace]

    def agent_connections_changed(self, workspace, agent_id, delta):
        self._call()
        agent = self.agents.get((workspace, agent_id))
        if agent:
            count = agent.connections + delta
            self.agents[(workspace, agent_id)] = replace(agent, connections=count,
                                                         presence="online" if count > 0 else "offline")

    # connections
    def add_connection(self, who: Principal, connection_id, conversation_ids):
        self._call()
        self.connections.setdefault((who.workspace, who.role, who.id), {})[connection_id] = set(conversation_ids)
        for cid in conversation_ids:
            self.fanout.setdefault((who.workspace, cid), {})[connection_id] = ConnectionRef(connection_id, who.role, who.id)

    def remove_connection(self, who, connection_id):
        self._call()
        convs = self.connections.get((who.workspace, who.role, who.id), {}).pop(connection_id, set())
        for cid in convs:
            self.fanout.get((who.workspace, cid), {}).pop(connection_id, None)

    def connections_of(self, workspace, role, user_id):
        self._call()
        return [ConnectionRef(c, role, user_id) for c in self.connections.get((workspace, role, user_id), {})]

    # conversations
    def open_conversation_id(self, workspace, customer_id):
        self._call()
        return self.open.get((workspace, customer_id))

    def create_conversation(self, conversation: Conversation, connections):
        self._call()
        key = (conversation.workspace, conversation.customer_id)
        if key in self.open:
            raise ConversationAlreadyOpen(self.open[key])
        self.open[key] = conversation.id
        self.conversations[(conversation.workspace, conversation.id)] = replace(conversation)
        for ref in connections:
            self.fanout.setdefault((conversation.workspace, conversation.id), {})[ref.connection_id] = ref
            self.connections[(conversation.workspace, ref.role, ref.user_id)][ref.connection_id].add(conversation.id)

    def open_conversations_of_agent(self, workspace, agent_id):
        self._call()
        return [replace(c) for (ws, _), c in self.conversations.items()
                if ws == workspace and c.agent_id == agent_id and c.status != "closed"]

    def get_conversation(self, workspace, conversation_id):
        self._call()
        found = self.conversations.get((workspace, conversation_id))
        return replace(found) if found else None

    def load_for_fanout(self, workspace, conversation_id):
        self._call()
        found = self.conversations.get((workspace, conversation_id))
        refs = list(self.fanout.get((workspace, conversation_id), {}).values())
        return (replace(found) if found else None), refs

    def append_message(self, conversation, message, sender_key):
        self._call()
        with self.lock:
            ws, cid = conversation.workspace, conversation.id
            if (ws, cid, sender_key, message.client_message_id) in self.dedup:
                raise DuplicateMessage()
            stored = self.conversations[(ws, cid)]
            if stored.last_seq != message.seq - 1 or stored.status == "closed":
                raise SeqConflict()
            self.dedup[(ws, cid, sender_key, message.client_message_id)] = message.seq
            stored.last_seq = message.seq
            self.messages.setdefault((ws, cid), {})[message.seq] = message

    def find_message(self, workspace, conversation_id, sender_key, client_message_id):
        self._call()
        seq = self.dedup.get((workspace, conversation_id, sender_key, client_message_id))
        return self.messages[(workspace, conversation_id)][seq] if seq else None

    def messages_after(self, workspace, conversation_id, after_seq, limit):
        self._call()
        stored = self.messages.get((workspace, conversation_id), {})
        return [stored[s] for s in sorted(stored) if s > after_seq][:limit]

    def last_messages(self, workspace, conversation_id, limit):
        self._call()
        stored = self.messages.get((workspace, conversation_id), {})
        return [stored[s] for s in sorted(stored)][-limit:]

    def attach(self, workspace, conversation_id, connections):
        self._call()
        for ref in connections:
            self.fanout.setdefault((workspace, conversation_id), {})[ref.connection_id] = ref
            self.connections[(workspace, ref.role, ref.user_id)][ref.connection_id].add(conversation_id)

    def detach(self, workspace, conversation_id, connections, *, forget=False):
        self._call()
        for ref in connections:
            self.fanout.get((workspace, conversation_id), {}).pop(ref.connection_id, None)
            mine = self.connections.get((workspace, ref.role, ref.user_id), {})
            if forget:
                mine.pop(ref.connection_id, None)
            elif ref.connection_id in mine:
                mine[ref.connection_id].discard(conversation_id)

    def assign(self, conversation, agent, previous_agent_id):
        self._call()
        with self.lock:
            ws = conversation.workspace
            stored = self.conversations[(ws, conversation.id)]
            current = self.agents[(ws, agent.id)]
            if current.presence != "online" or current.load >= current.max_concurrent:
                raise AssignConflict()
            if stored.agent_id != previous_agent_id or stored.status == "closed":
                raise AssignConflict()
            self.agents[(ws, agent.id)] = replace(current, load=current.load + 1)
            if previous_agent_id:
                prev = self.agents[(ws, previous_agent_id)]
                self.agents[(ws, previous_agent_id)] = replace(prev, load=prev.load - 1)
            stored.agent_id, stored.agent_name, stored.status = agent.id, agent.name, "assigned"


class RecordingNotifier:
    """Delivers frames into per-connection inboxes; connections in `gone` answer 410."""

    def __init__(self) -> None:
        self.inbox: dict[str, list[dict]] = {}
        self.gone: set[str] = set()

    def send(self, connection_id: str, frame: dict) -> bool:
        if connection_id in self.gone:
            return False
        self.inbox.setdefault(connection_id, []).append(frame)
        return True

    def frames(self, connection_id: str, type_: str | None = None) -> list[dict]:
        return [f for f in self.inbox.get(connection_id, []) if type_ is None or f["type"] == type_]
