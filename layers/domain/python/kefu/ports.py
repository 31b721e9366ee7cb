"""What the domain needs from the outside world. Adapters implement these; the domain imports no AWS SDK."""

from __future__ import annotations

from typing import Protocol

from typing import TYPE_CHECKING

from .models import Agent, ConnectionRef, Conversation, Message, Principal

if TYPE_CHECKING:
    from .routing import QueueEntry


class DuplicateMessage(Exception):
    """The sender already sent a message with this clientMessageId to this conversation."""


class SeqConflict(Exception):
    """Another message took the sequence number first; reload and try again."""


class AssignConflict(Exception):
    """The agent is full or away, or the conversation changed hands meanwhile."""


class StateConflict(Exception):
    """The conversation is no longer in the state the change assumed (closed, assigned, dequeued meanwhile)."""


class ConversationAlreadyOpen(Exception):
    def __init__(self, conversation_id: str):
        super().__init__(conversation_id)
        self.conversation_id = conversation_id


class Store(Protocol):
    # directory
    def get_agent(self, workspace: str, agent_id: str) -> Agent | None: ...
    def list_agents(self, workspace: str) -> list[Agent]:
        """Every agent of the workspace, read consistently (routing decides on it)."""

    def agent_connected(self, workspace: str, agent_id: str) -> Agent | None:
        """One more open console; an offline agent comes online. Returns the agent after the change."""

    def agent_disconnected(self, workspace: str, agent_id: str) -> Agent | None:
        """One console fewer; the last one stamps disconnected_at (the grace timer's token)."""

    def set_presence(self, workspace: str, agent_id: str, presence: str, *,
                     if_disconnected_at: str | None = None) -> Agent | None:
        """Set presence; with if_disconnected_at, only if the agent is still without a connection since then
        (returns None when that no longer holds)."""

    def settings(self, workspace: str) -> dict:
        """The workspace's routing settings as stored ({} for defaults)."""

    def survey_settings(self, workspace: str) -> dict:
        """What the survey after a close asks besides the stars, as stored: {"nps": bool} ({} for defaults)."""

    def handle_stats(self, workspace: str) -> dict[str, tuple[int, int]]:
        """Recent handle times per queue: {queue: (total_ms, count)}."""

    # connections
    def add_connection(self, who: Principal, connection_id: str, conversation_ids: list[str]) -> None: ...
    def remove_connection(self, who: Principal, connection_id: str) -> None: ...
    def connections_of(self, workspace: str, role: str, user_id: str) -> list[ConnectionRef]: ...

    # conversations
    def open_conversation_id(self, workspace: str, customer_id: str) -> str | None: ...
    def create_conversation(self, conversation: Conversation, connections: list[ConnectionRef]) -> None:
        """Raises ConversationAlreadyOpen when the customer has one already."""

    def open_conversations_of_agent(self, workspace: str, agent_id: str) -> list[Conversation]: ...
    def get_conversation(self, workspace: str, conversation_id: str) -> Conversation | None: ...
    def load_for_fanout(self, workspace: str, conversation_id: str) -> tuple[Conversation | None, list[ConnectionRef]]:
        """The conversation and its live connections, in one read."""

    def append_message(self, conversation: Conversation, message: Message, sender_key: str) -> None:
        """Store `message` as seq conversation.last_seq + 1. Raises DuplicateMessage or SeqConflict."""

    def find_message(self, workspace: str, conversation_id: str, sender_key: str, client_message_id: str) -> Message | None: ...
    def last_messages(self, workspace: str, conversation_id: str, limit: int) -> list[Message]:
        """The latest `limit` messages, oldest first."""

    def messages_after(self, workspace: str, conversation_id: str, after_seq: int, limit: int) -> list[Message]: ...
    def attach(self, workspace: str, conversation_id: str, connections: list[ConnectionRef]) -> None: ...
    def detach(self, workspace: str, conversation_id: str, connections: list[ConnectionRef], *, forget: bool = False) -> None:
        """Stop fanning out to these connections; with forget, also drop their connection records (they are gone)."""

    def assign(self, conversation: Conversation, agent: Agent, previous_agent_id: str | None,
               decision: dict | None = None, from_queue: QueueEntry | None = None,
               presences: tuple[str, ...] = ("online",)) -> None:
        """Atomically: the agent's load +1 (only if in one of `presences` — an agent taking a conversation
        themselves may be away —, connected and below capacity), the previous agent's
        load -1, the conversation's agent set (only if it still has `previous_agent_id` and is not closed), the
        decision recorded, and the queue entry removed (only if still there). Raises AssignConflict."""

    def enqueue(self, conversation: Conversation, entry: QueueEntry, previous_agent_id: str | None,
                decision: dict) -> None:
        """Atomically: the queue entry added, the conversation marked queued (only if it still has
        `previous_agent_id` and is open), the previous agent's load -1. Raises StateConflict."""

    def queue_entries(self, workspace: str) -> list[QueueEntry]:
        """The workspace's waiting conversations, read consistently, in queue order."""

    def leave_queue(self, conversation: Conversation, entry_key: str, reason: str) -> None:
        """Remove the entry and close the conversation as abandoned. Raises StateConflict if already gone."""

    def close(self, conversation: Conversation, reason: str, closed_at: str) -> None:
        """Close (only if not closed): free the agent's seat, drop the open pointer and any queue entry.
        Raises StateConflict."""

    def record_handle_time(self, workspace: str, queue: str, handle_ms: int) -> None: ...
    def record_csat(self, conversation: Conversation, csat: dict) -> None:
        """Only on a closed conversation without a rating; StateConflict otherwise."""
    def add_counter(self, workspace: str, name: str, n: int = 1) -> None:
        """Add to this hour's counter (the same counters the stream aggregates)."""



class Timers(Protocol):
    def schedule(self, payload: dict, delay_s: int) -> None:
        """Deliver `payload` to the timers function after `delay_s` seconds (at most 900)."""


class Notifier(Protocol):
    def send(self, connection_id: str, frame: dict) -> bool:
        """Deliver one frame; False when the connection is gone."""


class PiiVault(Protocol):
    """Seals the personal data masked out of a stored message (kefu.pii.redact), bound to its workspace and
    conversation: a sealed value opens only with the same two (adapters/pii_vault.py: KMS with an encryption
    context, a key only the functions that mask may encrypt with and only the API may decrypt with)."""

    def seal(self, workspace: str, conversation_id: str, values: list[str]) -> str: ...

    def open(self, workspace: str, conversation_id: str, sealed: str) -> list[str]:
        """The values; raises when the sealed text is not theirs or was damaged."""
