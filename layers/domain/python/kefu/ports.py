"""What the domain needs from the outside world. Adapters implement these; the domain imports no AWS SDK."""

from __future__ import annotations

from typing import Protocol

from .models import Agent, ConnectionRef, Conversation, Message, Principal


class DuplicateMessage(Exception):
    """The sender already sent a message with this clientMessageId to this conversation."""


class SeqConflict(Exception):
    """Another message took the sequence number first; reload and try again."""


class AssignConflict(Exception):
    """The agent is full or away, or the conversation changed hands meanwhile."""


class ConversationAlreadyOpen(Exception):
    def __init__(self, conversation_id: str):
        super().__init__(conversation_id)
        self.conversation_id = conversation_id


class Store(Protocol):
    # directory
    def get_agent(self, workspace: str, agent_id: str) -> Agent | None: ...
    def list_agents(self, workspace: str) -> list[Agent]: ...
    def agent_connections_changed(self, workspace: str, agent_id: str, delta: int) -> None: ...

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

    def assign(self, conversation: Conversation, agent: Agent, previous_agent_id: str | None) -> None:
        """Atomically: the agent's load +1 (only if online and below capacity), the previous agent's load -1,
        and the conversation's agent set (only if it still has `previous_agent_id`). Raises AssignConflict."""


class Notifier(Protocol):
    def send(self, connection_id: str, frame: dict) -> bool:
        """Deliver one frame; False when the connection is gone."""
