"""The Store port on DynamoDB, through PynamoDB models built from kefu.schema.

Item layout (see schema.py): a conversation is one partition "{ws}#C#{id}" holding its
META item, one CONN# item per live connection of its participants (the fan-out list,
read together with META in one Query), MSG# items keyed by zero-padded seq, and USED#
items that make a clientMessageId usable once (they sort after META and MSG#, out of the
way of the per-message Query). Invariants are conditions in DynamoDB:
the next seq, one open conversation per customer, an agent's capacity.
"""

from __future__ import annotations

import os
import time

from pynamodb.attributes import (
    DiscriminatorAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from .. import schema
from ..models import Agent, ConnectionRef, Conversation, Message, Principal, now_iso
from ..ports import AssignConflict, ConversationAlreadyOpen, DuplicateMessage, SeqConflict

CONNECTION_TTL_S = schema.WS_MAX_CONNECTION_S + 600
MSG_MAX = "MSG#999999999999"


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _host() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL") or None


def _meta(table: schema.Table) -> type:
    class Meta:
        table_name = os.environ.get(table.env_var, table.local_name)
        region = _region()
        host = _host()
        max_retry_attempts = 4
        base_backoff_ms = 25

    return Meta


def conv_pk(workspace: str, conversation_id: str) -> str:
    return f"{workspace}#C#{conversation_id}"


def msg_sk(seq: int) -> str:
    return f"MSG#{seq:012d}"


def person_key(workspace: str, role: str, user_id: str) -> str:
    return f"{workspace}#{role}#{user_id}"


# ---------------------------------------------------------------- models


class ByAgent(GlobalSecondaryIndex):
    class Meta:
        index_name = "byAgent"
        projection = AllProjection()

    agentKey = UnicodeAttribute(hash_key=True)
    openedAt = UnicodeAttribute(range_key=True)


class ConversationItem(Model):
    Meta = _meta(schema.CONVERSATIONS)
    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = DiscriminatorAttribute()
    expiresAt = NumberAttribute(null=True)
    # index keys live on the base model so that index queries come back typed
    agentKey = UnicodeAttribute(null=True)
    customerKey = UnicodeAttribute(null=True)
    openedAt = UnicodeAttribute(null=True)
    by_agent = ByAgent()


class MetaItem(ConversationItem, discriminator="meta"):
    workspace = UnicodeAttribute()
    conversationId = UnicodeAttribute()
    customerId = UnicodeAttribute()
    customerName = UnicodeAttribute(default="")
    customerTags = ListAttribute(of=UnicodeAttribute, default=list)
    channel = UnicodeAttribute(default="web")
    status = UnicodeAttribute(default="open")
    agentId = UnicodeAttribute(null=True)
    agentName = UnicodeAttribute(null=True)
    lastSeq = NumberAttribute(default=0)
    updatedAt = UnicodeAttribute(null=True)

    def domain(self) -> Conversation:
        return Conversation(
            workspace=self.workspace,
            id=self.conversationId,
            customer_id=self.customerId,
            customer_name=self.customerName,
            customer_tags=tuple(self.customerTags or ()),
            channel=self.channel,
            status=self.status,
            agent_id=self.agentId,
            agent_name=self.agentName,
            last_seq=int(self.lastSeq),
            opened_at=self.openedAt,
        )


class FanoutItem(ConversationItem, discriminator="conn"):
    role = UnicodeAttribute()
    userId = UnicodeAttribute()

    def ref(self) -> ConnectionRef:
        return ConnectionRef(self.sk[len("CONN#") :], self.role, self.userId)


class MessageItem(ConversationItem, discriminator="msg"):
    seq = NumberAttribute()
    clientMessageId = UnicodeAttribute()
    senderRole = UnicodeAttribute()
    senderId = UnicodeAttribute()
    senderName = UnicodeAttribute(default="")
    text = UnicodeAttribute()
    createdAt = UnicodeAttribute()

    def domain(self, conversation_id: str) -> Message:
        return Message(
            conversation_id=conversation_id,
            seq=int(self.seq),
            client_message_id=self.clientMessageId,
            sender={"role": self.senderRole, "id": self.senderId, "name": self.senderName},
            text=self.text,
            created_at=self.createdAt,
        )


class DedupItem(ConversationItem, discriminator="dedup"):
    seq = NumberAttribute()


class OpenPointer(ConversationItem, discriminator="open"):
    conversationId = UnicodeAttribute()


class ConnectionItem(Model):
    Meta = _meta(schema.CONNECTIONS)
    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)  # the API Gateway connection id
    conversations = UnicodeSetAttribute(null=True)
    connectedAt = UnicodeAttribute()
    expiresAt = NumberAttribute()


class DirectoryItem(Model):
    Meta = _meta(schema.DIRECTORY)
    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = DiscriminatorAttribute()


class WorkspaceItem(DirectoryItem, discriminator="workspace"):
    name = UnicodeAttribute(default="")


class AgentItem(DirectoryItem, discriminator="agent"):
    agentId = UnicodeAttribute()
    name = UnicodeAttribute(default="")
    role = UnicodeAttribute(default="agent")
    groups = ListAttribute(of=UnicodeAttribute, default=list)
    languages = ListAttribute(of=UnicodeAttribute, default=list)
    maxConcurrent = NumberAttribute(default=5)
    presence = UnicodeAttribute(default="offline")
    connections = NumberAttribute(default=0)
    load = NumberAttribute(default=0)

    def domain(self) -> Agent:
        return Agent(
            workspace=self.pk,
            id=self.agentId,
            name=self.name,
            role=self.role,
            groups=tuple(self.groups or ()),
            languages=tuple(self.languages or ()),
            max_concurrent=int(self.maxConcurrent),
            presence=self.presence,
            connections=int(self.connections),
            load=int(self.load),
        )

    @classmethod
    def from_domain(cls, agent: Agent) -> AgentItem:
        return cls(
            agent.workspace,
            f"AGENT#{agent.id}",
            agentId=agent.id,
            name=agent.name,
            role=agent.role,
            groups=list(agent.groups),
            languages=list(agent.languages),
            maxConcurrent=agent.max_concurrent,
            presence=agent.presence,
            connections=agent.connections,
            load=agent.load,
        )




def _get(model: type[Model], hash_key: str, range_key: str):
    try:
        return model.get(hash_key, range_key)
    except model.DoesNotExist:
        return None


def _cancelled(error: TransactWriteError) -> list[str]:
    """The cancellation code of each item of a failed transaction, in order."""
    return [(r.code if r else "None") for r in (error.cancellation_reasons or [])]


# ---------------------------------------------------------------- the store


class DynamoStore:
    """Implements kefu.ports.Store."""

    def __init__(self) -> None:
        self._connection = Connection(region=_region(), host=_host())

    def _tx(self) -> TransactWrite:
        return TransactWrite(connection=self._connection)

    # directory --------------------------------------------------------

    def get_agent(self, workspace: str, agent_id: str) -> Agent | None:
        item = _get(AgentItem, workspace, f"AGENT#{agent_id}")
        return item.domain() if item else None

    def list_agents(self, workspace: str) -> list[Agent]:
        items = AgentItem.query(workspace, AgentItem.sk.startswith("AGENT#"))
        return [i.domain() for i in items if isinstance(i, AgentItem)]

    def put_agent(self, agent: Agent) -> None:
        AgentItem.from_domain(agent).save()

    def workspace_exists(self, workspace: str) -> bool:
        return _get(WorkspaceItem, workspace, "WORKSPACE") is not None

    def put_workspace(self, workspace: str, name: str) -> None:
        WorkspaceItem(workspace, "WORKSPACE", name=name).save()

    def agent_connections_changed(self, workspace: str, agent_id: str, delta: int) -> None:
        item = AgentItem(workspace, f"AGENT#{agent_id}")
        try:  # update() refreshes the item from the new image
            item.update(actions=[AgentItem.connections.add(delta)], condition=AgentItem.pk.exists())
        except UpdateError:
            return  # the agent was deleted meanwhile
        presence = "online" if int(item.connections) > 0 else "offline"
        if item.presence != presence:
            item.update(actions=[AgentItem.presence.set(presence)])

    # connections ------------------------------------------------------

    def add_connection(self, who: Principal, connection_id: str, conversation_ids: list[str]) -> None:
        record = ConnectionItem(
            person_key(who.workspace, who.role, who.id),
            connection_id,
            conversations=set(conversation_ids) or None,
            connectedAt=now_iso(),
            expiresAt=int(time.time()) + CONNECTION_TTL_S,
        )
        with self._tx() as tx:
            tx.save(record)
            for conversation_id in conversation_ids:
                tx.save(self._fanout_item(who.workspace, conversation_id, ConnectionRef(connection_id, who.role, who.id)))

    def remove_connection(self, who: Principal, connection_id: str) -> None:
        record = _get(ConnectionItem, person_key(who.workspace, who.role, who.id), connection_id)
        if record is None:
            return
        with self._tx() as tx:
            tx.delete(record)
            for conversation_id in record.conversations or ():
                tx.delete(FanoutItem(conv_pk(who.workspace, conversation_id), f"CONN#{connection_id}"))

    def connections_of(self, workspace: str, role: str, user_id: str) -> list[ConnectionRef]:
        now = int(time.time())
        return [
            ConnectionRef(item.sk, role, user_id)
            for item in ConnectionItem.query(person_key(workspace, role, user_id))
            if item.expiresAt > now
        ]

    # conversations ----------------------------------------------------

    def open_conversation_id(self, workspace: str, customer_id: str) -> str | None:
        pointer = _get(OpenPointer, f"{workspace}#U#{customer_id}", "OPEN")
        return pointer.conversationId if pointer else None

    def create_conversation(self, conversation: Conversation, connections: list[ConnectionRef]) -> None:
        ws = conversation.workspace
        meta = MetaItem(
            conv_pk(ws, conversation.id),
            "META",
            workspace=ws,
            conversationId=conversation.id,
            customerId=conversation.customer_id,
            customerName=conversation.customer_name,
            customerTags=list(conversation.customer_tags),
            channel=conversation.channel,
            status=conversation.status,
            lastSeq=0,
            openedAt=conversation.opened_at,
            updatedAt=conversation.opened_at,
            customerKey=f"{ws}#{conversation.customer_id}",
        )
        pointer = OpenPointer(f"{ws}#U#{conversation.customer_id}", "OPEN", conversationId=conversation.id)
        try:
            with self._tx() as tx:
                tx.save(pointer, condition=OpenPointer.pk.does_not_exist())
                tx.save(meta, condition=MetaItem.pk.does_not_exist())
                for ref in connections:
                    tx.save(self._fanout_item(ws, conversation.id, ref))
                    tx.update(
                        ConnectionItem(person_key(ws, ref.role, ref.user_id), ref.connection_id),
                        actions=[ConnectionItem.conversations.add({conversation.id})],
                        condition=ConnectionItem.pk.exists(),
                    )
        except TransactWriteError as error:
            reasons = _cancelled(error)
            if reasons and reasons[0] == "ConditionalCheckFailed":
                existing = self.open_conversation_id(ws, conversation.customer_id)
                if existing:
                    raise ConversationAlreadyOpen(existing) from None
            if any(r == "ConditionalCheckFailed" for r in reasons[2:]):
                # a connection closed meanwhile: open the conversation without it
                live = [c for c in self.connections_of(ws, "customer", conversation.customer_id) if c in connections]
                if len(live) < len(connections):
                    return self.create_conversation(conversation, live)
            raise

    def open_conversations_of_agent(self, workspace: str, agent_id: str) -> list[Conversation]:
        items = ConversationItem.by_agent.query(f"{workspace}#{agent_id}")
        return [i.domain() for i in items if isinstance(i, MetaItem) and i.status != "closed"]

    def get_conversation(self, workspace: str, conversation_id: str) -> Conversation | None:
        item = _get(MetaItem, conv_pk(workspace, conversation_id), "META")
        return item.domain() if isinstance(item, MetaItem) else None

    def load_for_fanout(self, workspace: str, conversation_id: str) -> tuple[Conversation | None, list[ConnectionRef]]:
        # "CONN#..." < "META" < "MSG#...": one Query returns the fan-out list and the META item
        meta, connections = None, []
        for item in ConversationItem.query(
            conv_pk(workspace, conversation_id), ConversationItem.sk.between("CONN#", "META")
        ):
            if isinstance(item, MetaItem):
                meta = item.domain()
            elif isinstance(item, FanoutItem):
                connections.append(item.ref())
        return meta, connections

    def append_message(self, conversation: Conversation, message: Message, sender_key: str) -> None:
        pk = conv_pk(conversation.workspace, conversation.id)
        try:
            with self._tx() as tx:
                tx.save(DedupItem(pk, f"USED#{sender_key}#{message.client_message_id}", seq=message.seq),
                        condition=DedupItem.pk.does_not_exist())
                tx.update(
                    MetaItem(pk, "META"),
                    actions=[MetaItem.lastSeq.set(message.seq), MetaItem.updatedAt.set(message.created_at)],
                    condition=(MetaItem.lastSeq == message.seq - 1) & (MetaItem.status != "closed"),
                )
                tx.save(
                    MessageItem(
                        pk,
                        msg_sk(message.seq),
                        seq=message.seq,
                        clientMessageId=message.client_message_id,
                        senderRole=message.sender["role"],
                        senderId=message.sender["id"],
                        senderName=message.sender.get("name") or "",
                        text=message.text,
                        createdAt=message.created_at,
                    ),
                    condition=MessageItem.pk.does_not_exist(),
                )
        except TransactWriteError as error:
            reasons = _cancelled(error)
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise DuplicateMessage() from None
            if "ConditionalCheckFailed" in reasons or "TransactionConflict" in reasons:
                raise SeqConflict() from None
            raise

    def find_message(self, workspace: str, conversation_id: str, sender_key: str, client_message_id: str) -> Message | None:
        pk = conv_pk(workspace, conversation_id)
        dedup = _get(DedupItem, pk, f"USED#{sender_key}#{client_message_id}")
        if not isinstance(dedup, DedupItem):
            return None
        item = _get(MessageItem, pk, msg_sk(int(dedup.seq)))
        return item.domain(conversation_id) if isinstance(item, MessageItem) else None

    def messages_after(self, workspace: str, conversation_id: str, after_seq: int, limit: int) -> list[Message]:
        items = ConversationItem.query(
            conv_pk(workspace, conversation_id),
            ConversationItem.sk.between(msg_sk(after_seq + 1), MSG_MAX),
            limit=limit,
        )
        return [i.domain(conversation_id) for i in items if isinstance(i, MessageItem)]

    def last_messages(self, workspace: str, conversation_id: str, limit: int) -> list[Message]:
        items = ConversationItem.query(
            conv_pk(workspace, conversation_id),
            ConversationItem.sk.between(msg_sk(1), MSG_MAX),
            scan_index_forward=False,
            limit=limit,
        )
        return [i.domain(conversation_id) for i in items if isinstance(i, MessageItem)][::-1]

    def attach(self, workspace: str, conversation_id: str, connections: list[ConnectionRef]) -> None:
        for ref in connections:
            try:
                with self._tx() as tx:
                    tx.save(self._fanout_item(workspace, conversation_id, ref))
                    tx.update(
                        ConnectionItem(person_key(workspace, ref.role, ref.user_id), ref.connection_id),
                        actions=[ConnectionItem.conversations.add({conversation_id})],
                        condition=ConnectionItem.pk.exists(),
                    )
            except TransactWriteError:
                continue  # that connection closed meanwhile

    def detach(self, workspace: str, conversation_id: str, connections: list[ConnectionRef], *, forget: bool = False) -> None:
        for ref in connections:
            with self._tx() as tx:
                tx.delete(FanoutItem(conv_pk(workspace, conversation_id), f"CONN#{ref.connection_id}"))
                record = ConnectionItem(person_key(workspace, ref.role, ref.user_id), ref.connection_id)
                if forget:
                    tx.delete(record)
                else:
                    tx.update(
                        record,
                        actions=[ConnectionItem.conversations.delete({conversation_id})],
                        condition=ConnectionItem.pk.exists(),
                    )

    def assign(self, conversation: Conversation, agent: Agent, previous_agent_id: str | None) -> None:
        ws = conversation.workspace
        meta = MetaItem(conv_pk(ws, conversation.id), "META")
        owner: Condition = MetaItem.agentId == previous_agent_id if previous_agent_id else MetaItem.agentId.does_not_exist()
        try:
            with self._tx() as tx:
                tx.update(
                    AgentItem(ws, f"AGENT#{agent.id}"),
                    actions=[AgentItem.load.add(1)],
                    condition=(AgentItem.presence == "online") & (AgentItem.load < agent.max_concurrent)
                    & (AgentItem.maxConcurrent == agent.max_concurrent),
                )
                if previous_agent_id:
                    tx.update(
                        AgentItem(ws, f"AGENT#{previous_agent_id}"),
                        actions=[AgentItem.load.add(-1)],
                        condition=AgentItem.load > 0,
                    )
                tx.update(
                    meta,
                    actions=[
                        MetaItem.agentId.set(agent.id),
                        MetaItem.agentName.set(agent.name),
                        MetaItem.agentKey.set(f"{ws}#{agent.id}"),
                        MetaItem.status.set("assigned"),
                        MetaItem.updatedAt.set(now_iso()),
                    ],
                    condition=owner & (MetaItem.status != "closed"),
                )
        except TransactWriteError:
            raise AssignConflict() from None

    # helpers ------------------------------------------------------------

    @staticmethod
    def _fanout_item(workspace: str, conversation_id: str, ref: ConnectionRef) -> FanoutItem:
        return FanoutItem(
            conv_pk(workspace, conversation_id),
            f"CONN#{ref.connection_id}",
            role=ref.role,
            userId=ref.user_id,
            expiresAt=int(time.time()) + CONNECTION_TTL_S,
        )


class MetricItem(Model):
    Meta = _meta(schema.METRICS)
    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    value = NumberAttribute(default=0)
    expiresAt = NumberAttribute(null=True)


class DynamoMetrics:
    def add_counters(self, counts: dict[tuple[str, str], int]) -> None:
        from ..metrics import METRIC_RETENTION_S

        expires = int(time.time()) + METRIC_RETENTION_S
        for (workspace, key), n in counts.items():
            MetricItem(workspace, key).update(actions=[MetricItem.value.add(n), MetricItem.expiresAt.set(expires)])

    def counters(self, workspace: str, prefix: str = "") -> dict[str, int]:
        condition = MetricItem.sk.startswith(prefix) if prefix else None
        return {i.sk: int(i.value) for i in MetricItem.query(workspace, condition)}
