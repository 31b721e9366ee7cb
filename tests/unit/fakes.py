"""In-memory stand-ins for the ports, with the same conditional semantics as the DynamoDB adapter."""

from __future__ import annotations

import threading
from dataclasses import replace

from kefu.models import Agent, ConnectionRef, Conversation, Message, Principal, now_iso
from kefu.ports import AssignConflict, ConversationAlreadyOpen, DuplicateMessage, SeqConflict, StateConflict
from kefu.routing import QueueEntry
from kefu.tickets import Ticket


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
        self.queue: dict[tuple[str, str], QueueEntry] = {}  # (ws, sort key) -> entry
        self.workspace_settings: dict[str, dict] = {}
        self.survey: dict[str, dict] = {}  # survey settings per workspace ({"nps": bool})
        self.handled: dict[tuple[str, str], tuple[int, int]] = {}
        self.counters: dict[tuple[str, str], int] = {}
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

    def _agent_update(self, workspace, agent_id, **changes):
        agent = self.agents.get((workspace, agent_id))
        if agent is None:
            return None
        agent = replace(agent, **changes)
        self.agents[(workspace, agent_id)] = agent
        return agent

    def agent_connected(self, workspace, agent_id):
        self._call()
        with self.lock:
            agent = self.agents.get((workspace, agent_id))
            if agent is None:
                return None
            presence = "online" if agent.presence == "offline" else agent.presence
            return self._agent_update(workspace, agent_id, connections=agent.connections + 1, presence=presence,
                                      disconnected_at=None)

    def agent_disconnected(self, workspace, agent_id):
        self._call()
        with self.lock:
            agent = self.agents.get((workspace, agent_id))
            if agent is None or agent.connections <= 0:
                return None
            count = agent.connections - 1
            return self._agent_update(workspace, agent_id, connections=count,
                                      disconnected_at=now_iso() if count == 0 else agent.disconnected_at)

    def set_presence(self, workspace, agent_id, presence, *, if_disconnected_at=None):
        self._call()
        with self.lock:
            agent = self.agents.get((workspace, agent_id))
            if agent is None:
                return None
            if if_disconnected_at is not None and (agent.connections or agent.disconnected_at != if_disconnected_at):
                return None
            return self._agent_update(workspace, agent_id, presence=presence)

    def settings(self, workspace):
        self._call()
        return dict(self.workspace_settings.get(workspace, {}))

    def survey_settings(self, workspace):
        self._call()
        return dict(self.survey.get(workspace, {}))

    def put_survey_settings(self, workspace, settings):
        self.survey[workspace] = dict(settings)

    def handle_stats(self, workspace):
        self._call()
        return {q: v for (ws, q), v in self.handled.items() if ws == workspace}

    def record_csat(self, conversation, csat):
        self._call()
        stored = self.conversations[(conversation.workspace, conversation.id)]
        if stored.status != "closed" or stored.csat:
            raise StateConflict()
        self.conversations[(conversation.workspace, conversation.id)] = replace(stored, csat=dict(csat))

    def record_handle_time(self, workspace, queue, handle_ms):
        self._call()
        total, count = self.handled.get((workspace, queue), (0, 0))
        self.handled[(workspace, queue)] = (total + handle_ms, count + 1)

    def add_counter(self, workspace, name, n=1):
        self._call()
        self.counters[(workspace, name)] = self.counters.get((workspace, name), 0) + n

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

    def assign(self, conversation, agent, previous_agent_id, decision=None, from_queue=None, presences=("online",)):
        self._call()
        with self.lock:
            ws = conversation.workspace
            stored = self.conversations[(ws, conversation.id)]
            current = self.agents[(ws, agent.id)]
            if (current.presence not in presences or current.connections <= 0 or current.load >= current.max_concurrent
                    or current.max_concurrent != agent.max_concurrent):
                raise AssignConflict()
            if stored.agent_id != previous_agent_id or stored.status == "closed":
                raise AssignConflict()
            if from_queue is not None and ((ws, from_queue.sort_key) not in self.queue
                                           or stored.queue_key != from_queue.sort_key):
                raise AssignConflict()
            now = now_iso()
            self.agents[(ws, agent.id)] = replace(current, load=current.load + 1, last_assigned_at=now)
            if previous_agent_id:
                prev = self.agents[(ws, previous_agent_id)]
                self.agents[(ws, previous_agent_id)] = replace(prev, load=prev.load - 1)
            if from_queue is not None:
                del self.queue[(ws, from_queue.sort_key)]
            stored.agent_id, stored.agent_name, stored.status = agent.id, agent.name, "assigned"
            stored.assigned_at, stored.queue_key, stored.routing = now, None, decision
            stored.group, stored.priority = conversation.group, conversation.priority
            stored.language = conversation.language or stored.language

    def enqueue(self, conversation, entry, previous_agent_id, decision):
        self._call()
        with self.lock:
            ws = conversation.workspace
            stored = self.conversations[(ws, conversation.id)]
            if stored.agent_id != previous_agent_id or stored.queue_key or stored.status == "closed":
                raise StateConflict()
            if previous_agent_id:
                prev = self.agents[(ws, previous_agent_id)]
                self.agents[(ws, previous_agent_id)] = replace(prev, load=prev.load - 1)
            self.queue[(ws, entry.sort_key)] = entry
            stored.status, stored.queue_key, stored.routing = "queued", entry.sort_key, decision
            stored.agent_id = stored.agent_name = None
            stored.queued_at = stored.queued_at or now_iso()
            stored.priority = entry.priority
            stored.group = None if entry.queue == "*" else entry.queue

    def queue_entries(self, workspace):
        self._call()
        return [e for (ws, key), e in sorted(self.queue.items()) if ws == workspace]

    def leave_queue(self, conversation, entry_key, reason):
        self._finish(conversation, reason, now_iso(), entry_key)

    def close(self, conversation, reason, closed_at):
        self._finish(conversation, reason, closed_at, conversation.queue_key)

    def _finish(self, conversation, reason, closed_at, entry_key):
        self._call()
        with self.lock:
            ws = conversation.workspace
            stored = self.conversations[(ws, conversation.id)]
            if (stored.status == "closed" or stored.agent_id != conversation.agent_id
                    or stored.queue_key != entry_key):
                raise StateConflict()
            if stored.agent_id:
                agent = self.agents[(ws, stored.agent_id)]
                self.agents[(ws, stored.agent_id)] = replace(agent, load=agent.load - 1)
            if entry_key:
                self.queue.pop((ws, entry_key), None)
            self.open.pop((ws, stored.customer_id), None)
            stored.status, stored.closed_at, stored.close_reason, stored.queue_key = "closed", closed_at, reason, None


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


class FakeTimers:
    """Keeps scheduled checks until the test lets time pass (fire)."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[dict, int]] = []

    def schedule(self, payload: dict, delay_s: int) -> None:
        self.scheduled.append((payload, delay_s))

    def fire(self, router, kind: str | None = None) -> int:
        due = [p for p, _ in self.scheduled if kind is None or p["kind"] == kind]
        self.scheduled = [(p, d) for p, d in self.scheduled if not (kind is None or p["kind"] == kind)]
        for payload in due:
            router.timer(payload)
        return len(due)


class MemoryTicketStore:
    """kefu.tickets.TicketStore in memory: the same version and status conditions as DynamoDB."""

    FIELDS = {"assignee_id", "assignee_name", "group", "subject", "description", "priority", "status", "deadline",
              "conversations", "expires_at"}

    def __init__(self) -> None:
        self.tickets: dict[tuple[str, str], Ticket] = {}
        self.comment_items: dict[tuple[str, str], list[dict]] = {}
        self.settings: dict[str, dict] = {}

    def create_ticket(self, ticket):
        assert (ticket.workspace, ticket.id) not in self.tickets
        self.tickets[(ticket.workspace, ticket.id)] = ticket

    def get_ticket(self, workspace, ticket_id):
        return self.tickets.get((workspace, ticket_id))

    def update_ticket(self, ticket, changes, event, *, expect_status=None):
        stored = self.tickets.get((ticket.workspace, ticket.id))
        if stored is None or stored.version != ticket.version or (expect_status and stored.status != expect_status):
            raise StateConflict()
        assert set(changes) <= self.FIELDS, changes
        updated = replace(stored, **changes, history=(*stored.history, event), version=stored.version + 1,
                          updated_at=event["at"])
        self.tickets[(ticket.workspace, ticket.id)] = updated
        return updated

    def add_comment(self, ticket, comment, event):
        stored = self.tickets[(ticket.workspace, ticket.id)]
        self.tickets[(ticket.workspace, ticket.id)] = replace(stored, history=(*stored.history, event),
                                                              version=stored.version + 1)
        self.comment_items.setdefault((ticket.workspace, ticket.id), []).append(comment)
        return ticket

    def comments(self, workspace, ticket_id):
        return list(self.comment_items.get((workspace, ticket_id), []))

    def list_tickets(self, workspace, filters, cursor, limit):
        found = [t for (ws, _), t in sorted(self.tickets.items(), key=lambda kv: kv[1].created_at, reverse=True)
                 if ws == workspace and all(getattr(t, {"customerId": "customer_id", "groupId": "group",
                                                        "assigneeId": "assignee_id"}.get(k, k)) == v
                                            for k, v in filters.items() if v)]
        start = int(cursor or 0)
        page = found[start:start + limit]
        return page, (str(start + limit) if start + limit < len(found) else None)

    def ticket_settings(self, workspace):
        return self.settings.get(workspace, {})

    def put_ticket_settings(self, workspace, settings):
        self.settings[workspace] = settings
