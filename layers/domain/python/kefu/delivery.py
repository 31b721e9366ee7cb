"""Getting frames to people: fan-out to a conversation's connections, frames to one person, and
messages from kefu itself (stored and sequenced like any other message)."""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

from .errors import Busy
from .models import ConnectionRef, Conversation, Message, new_id, now_iso
from .ports import DuplicateMessage, Notifier, SeqConflict, Store

MAX_SEQ_RETRIES = 30  # each lost race means another writer won: progress is guaranteed
SYSTEM = {"role": "system", "id": "system", "name": "kefu"}


class Delivery:
    def __init__(self, store: Store, notifier: Notifier, *, threads: int = 8):
        self.store = store
        self.notifier = notifier
        self.pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None

    def fan_out(self, conversation: Conversation, connections: list[ConnectionRef], frame: dict,
                exclude: str | None = None) -> None:
        """To every connection of the conversation but `exclude`; connections found gone are detached."""
        targets = [c for c in connections if c.connection_id != exclude]
        gone = [c for c, ok in zip(targets, self.deliver(targets, frame)) if not ok]
        if gone:
            self.store.detach(conversation.workspace, conversation.id, gone, forget=True)

    def to_person(self, workspace: str, role: str, user_id: str, frame: dict) -> int:
        """Send to every connection of one person; how many took it."""
        return sum(self.deliver(self.store.connections_of(workspace, role, user_id), frame))

    def to_customer(self, conversation: Conversation, frame: dict) -> int:
        return self.to_person(conversation.workspace, "customer", conversation.customer_id, frame)

    def deliver(self, targets: list[ConnectionRef], frame: dict) -> list[bool]:
        if len(targets) <= 1 or self.pool is None:
            return [self.notifier.send(c.connection_id, frame) for c in targets]
        return list(self.pool.map(lambda c: self.notifier.send(c.connection_id, frame), targets))

    def map(self, fn, items) -> None:
        """Run fn over items on the delivery threads (independent notifications)."""
        items = list(items)
        if len(items) <= 1 or self.pool is None:
            for item in items:
                fn(item)
        else:
            list(self.pool.map(fn, items))

    def post_system_message(self, conversation: Conversation, text: str) -> Message | None:
        """A message from kefu itself (someone joined, a transfer), stored and sequenced like any other;
        None when the conversation is closed."""
        return self.post(conversation, SYSTEM, text, client_message_id=new_id("sys"), sender_key="system")

    def post(self, conversation: Conversation, sender: dict, text: str, *, client_message_id: str,
             sender_key: str, meta: dict | None = None) -> Message | None:
        """Store a message from someone other than the caller's socket (kefu, the bot, an agent acting on
        a suggestion) with the next seq, and fan it out to everyone. A repeat of the same clientMessageId
        returns the message stored the first time; None when the conversation is closed."""
        for attempt in range(MAX_SEQ_RETRIES):
            fresh, connections = self.store.load_for_fanout(conversation.workspace, conversation.id)
            if fresh is None or fresh.status == "closed":
                return None
            message = Message(conversation.id, fresh.last_seq + 1, client_message_id, sender, text, now_iso(), meta)
            try:
                self.store.append_message(fresh, message, sender_key)
            except SeqConflict:
                backoff(attempt)
                continue
            except DuplicateMessage:
                return self.store.find_message(conversation.workspace, conversation.id, sender_key, client_message_id)
            self.fan_out(fresh, connections, message.frame())
            return message
        raise Busy("could not post the message; the conversation is very busy")


def backoff(attempt: int) -> None:
    """Full jitter, capped: spreads racing writers apart without slowing the common case."""
    time.sleep(random.uniform(0, min(0.1, 0.002 * 2**attempt)))
