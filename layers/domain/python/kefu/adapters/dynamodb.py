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
    BooleanAttribute,
    MapAttribute,
    DiscriminatorAttribute,
    JSONAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.connection import Connection
from pynamodb.exceptions import PutError, TransactWriteError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from .. import schema
from ..models import Agent, ConnectionRef, Conversation, Message, Principal, new_id, now_iso
from ..ports import AssignConflict, ConversationAlreadyOpen, DuplicateMessage, SeqConflict, StateConflict
from ..routing import QueueEntry

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


class ByCustomer(GlobalSecondaryIndex):
    class Meta:
        index_name = "byCustomer"
        projection = AllProjection()

    customerKey = UnicodeAttribute(hash_key=True)
    openedAt = UnicodeAttribute(range_key=True)


class ByWorkspace(GlobalSecondaryIndex):
    class Meta:
        index_name = "byWorkspace"
        projection = AllProjection()

    listKey = UnicodeAttribute(hash_key=True)
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
    listKey = UnicodeAttribute(null=True)
    openedAt = UnicodeAttribute(null=True)
    by_agent = ByAgent()
    by_customer = ByCustomer()
    by_workspace = ByWorkspace()


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
    group = UnicodeAttribute(null=True)
    language = UnicodeAttribute(null=True)
    priority = NumberAttribute(default=0)
    queueKey = UnicodeAttribute(null=True)
    queuedAt = UnicodeAttribute(null=True)
    assignedAt = UnicodeAttribute(null=True)
    closedAt = UnicodeAttribute(null=True)
    closeReason = UnicodeAttribute(null=True)
    routing = JSONAttribute(null=True)
    bot = JSONAttribute(null=True)
    suggestion = JSONAttribute(null=True)
    suggestionId = UnicodeAttribute(null=True)  # the suggestion's id, where a condition can see it
    csat = MapAttribute(null=True)  # the customer's rating once closed: {score, comment, at, nps?} (a map: webhooks read it)
    firstResponseAt = UnicodeAttribute(null=True)  # the first agent message (analytics: first response time)
    retentionDays = NumberAttribute(null=True)  # kefu.privacy: the workspace's retention when it opened
    anonymous = BooleanAttribute(null=True)  # kefu.privacy: anonymous consultation (no name, tags)
    maskPii = BooleanAttribute(null=True)  # kefu.privacy: the customer's messages are stored masked

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
            group=self.group,
            language=self.language,
            priority=int(self.priority or 0),
            queue_key=self.queueKey,
            queued_at=self.queuedAt,
            assigned_at=self.assignedAt,
            closed_at=self.closedAt,
            close_reason=self.closeReason,
            routing=self.routing,
            bot=self.bot,
            suggestion=self.suggestion,
            csat=self.csat.as_dict() if self.csat is not None else None,
            retention_days=int(self.retentionDays) if self.retentionDays else None,
            anonymous=bool(self.anonymous),
            mask_pii=bool(self.maskPii),
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
    meta = JSONAttribute(null=True)
    channel = UnicodeAttribute(null=True)  # absent: web
    pii = JSONAttribute(null=True)  # a masked message: where the masked values are and their sealed originals

    def domain(self, conversation_id: str) -> Message:
        return Message(
            conversation_id=conversation_id,
            seq=int(self.seq),
            client_message_id=self.clientMessageId,
            sender={"role": self.senderRole, "id": self.senderId, "name": self.senderName},
            text=self.text,
            created_at=self.createdAt,
            meta=self.meta,
            channel=self.channel or "web",
            pii=self.pii,
        )


class RatingItem(ConversationItem, discriminator="rating"):
    """sk "RATE#{seq}": the customer's one vote on a bot answer."""

    helpful = BooleanAttribute()
    articleId = UnicodeAttribute()
    ratedAt = UnicodeAttribute()


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
    settings = JSONAttribute(null=True)  # routing
    bot = JSONAttribute(null=True)  # the bot's settings (bot.BotSettings)
    survey = JSONAttribute(null=True)  # the survey after a close: {"nps": bool} (PUT /workspaces/{ws}/survey)
    privacy = JSONAttribute(null=True)  # retention and anonymous consultation (kefu.privacy, PUT .../privacy)


class ErasureItem(DirectoryItem, discriminator="erased"):
    """pk workspace, sk "ERASED#{digest}" (kefu.privacy.customer_digest, never the id): the customer was erased at
    erasedAt (epoch seconds); their tokens issued at or before it are refused. expiresAt: the table's TTL."""

    erasedAt = NumberAttribute()
    expiresAt = NumberAttribute()


def erasure_sk(workspace: str, customer_id: str) -> str:
    from ..privacy import customer_digest

    return f"ERASED#{customer_digest(workspace, customer_id)}"


class QueueItem(DirectoryItem, discriminator="queued"):
    """pk "{ws}#Q", sk QueueEntry.sort_key: one Query reads the whole queue in order. The sort key
    carries queue, priority, arrival and conversation; the item adds only who to tell and the
    language asked for, so that reading a long queue stays cheap."""

    customerId = UnicodeAttribute(default="")
    language = UnicodeAttribute(null=True)
    customerName = UnicodeAttribute(null=True)

    def domain(self, workspace: str) -> QueueEntry:
        return QueueEntry.from_sort_key(workspace, self.sk, self.customerId, self.language, self.customerName or "")


def queue_pk(workspace: str) -> str:
    return f"{workspace}#Q"


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
    lastAssignedAt = UnicodeAttribute(null=True)
    disconnectedAt = UnicodeAttribute(null=True)

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
            last_assigned_at=self.lastAssignedAt,
            disconnected_at=self.disconnectedAt,
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


def _update_meta(conversation: Conversation, actions: list, condition: Condition) -> None:
    """One conditional update of a conversation's META item; StateConflict when the condition fails."""
    try:
        MetaItem(conv_pk(conversation.workspace, conversation.id), "META").update(actions=actions, condition=condition)
    except UpdateError as error:
        if _condition_failed(error):
            raise StateConflict() from None
        raise


def _expires(conversation: Conversation) -> int | None:
    """The TTL of an item written now into this conversation: its retention from now (kefu.privacy)."""
    days = conversation.retention_days
    return int(time.time()) + int(days) * 86400 if days else None


def _condition_failed(error: Exception) -> bool:
    cause = getattr(error, "cause_response_code", None)
    return cause == "ConditionalCheckFailedException"


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
        items = AgentItem.query(workspace, AgentItem.sk.startswith("AGENT#"), consistent_read=True)
        return [i.domain() for i in items if isinstance(i, AgentItem)]

    def put_agent(self, agent: Agent) -> None:
        AgentItem.from_domain(agent).save()

    def workspace_exists(self, workspace: str) -> bool:
        return _get(WorkspaceItem, workspace, "WORKSPACE") is not None

    # erasures (kefu.privacy: a customer's tokens issued at or before their erasure are refused) -------------

    def record_erasure(self, workspace: str, customer_id: str, erased_at: int) -> None:
        """Record that the customer was erased at erased_at (epoch seconds); a later erasure moves it on, never back."""
        from ..privacy import ERASURE_KEEP_S

        item = ErasureItem(workspace, erasure_sk(workspace, customer_id))
        try:
            item.update(actions=[ErasureItem.kind.set(ErasureItem), ErasureItem.erasedAt.set(int(erased_at)),
                                 ErasureItem.expiresAt.set(int(erased_at) + ERASURE_KEEP_S)],
                        condition=ErasureItem.erasedAt.does_not_exist() | (ErasureItem.erasedAt < int(erased_at)))
        except UpdateError as error:
            if not _condition_failed(error):
                raise  # (a failed condition: this time or a later one is recorded already)

    def erased_at(self, workspace: str, customer_id: str) -> int | None:
        """When the customer was last erased (epoch seconds), or None (one consistent GetItem)."""
        try:
            item = ErasureItem.get(workspace, erasure_sk(workspace, customer_id), consistent_read=True)
        except ErasureItem.DoesNotExist:
            return None
        return int(item.erasedAt) if isinstance(item, ErasureItem) else None

    def visitor_standing(self, workspace: str, customer_id: str) -> tuple[bool, int | None]:
        """For a visitor's $connect, in one request (a consistent BatchGetItem of two keys): whether the workspace
        exists, and when the customer was last erased (epoch seconds, or None)."""
        sk = erasure_sk(workspace, customer_id)
        found = {item.sk: item for item in DirectoryItem.batch_get([(workspace, "WORKSPACE"), (workspace, sk)],
                                                                    consistent_read=True)}
        erased = found.get(sk)
        return (isinstance(found.get("WORKSPACE"), WorkspaceItem),
                int(erased.erasedAt) if isinstance(erased, ErasureItem) else None)

    def put_workspace(self, workspace: str, name: str) -> None:
        WorkspaceItem(workspace, "WORKSPACE", name=name).save()

    def save_agent_profile(self, agent: Agent) -> Agent:
        """Create or update the profile; presence, connections and load stay as they are."""
        item = AgentItem(agent.workspace, f"AGENT#{agent.id}")
        item.update(actions=[
            AgentItem.kind.set(AgentItem),
            AgentItem.agentId.set(agent.id),
            AgentItem.name.set(agent.name),
            AgentItem.role.set(agent.role),
            AgentItem.groups.set(list(agent.groups)),
            AgentItem.languages.set(list(agent.languages)),
            AgentItem.maxConcurrent.set(agent.max_concurrent),
            AgentItem.presence.set(AgentItem.presence | "offline"),
            AgentItem.connections.set(AgentItem.connections | 0),
            AgentItem.load.set(AgentItem.load | 0),
        ])
        return item.domain()

    def agent_connected(self, workspace: str, agent_id: str) -> Agent | None:
        item = AgentItem(workspace, f"AGENT#{agent_id}")
        try:  # update() refreshes the item from the new image
            item.update(actions=[AgentItem.connections.add(1), AgentItem.disconnectedAt.remove()],
                        condition=AgentItem.pk.exists())
        except UpdateError:
            return None  # the agent was deleted meanwhile
        if item.presence == "offline":
            try:
                item.update(actions=[AgentItem.presence.set("online")], condition=AgentItem.presence == "offline")
            except UpdateError:
                pass  # they set a presence themselves meanwhile
        return item.domain()

    def agent_disconnected(self, workspace: str, agent_id: str) -> Agent | None:
        item = AgentItem(workspace, f"AGENT#{agent_id}")
        try:
            item.update(actions=[AgentItem.connections.add(-1)], condition=AgentItem.connections > 0)
        except UpdateError:
            return None
        if int(item.connections) == 0:
            try:
                item.update(actions=[AgentItem.disconnectedAt.set(now_iso())], condition=AgentItem.connections == 0)
            except UpdateError:
                pass  # reconnected meanwhile
        return item.domain()

    def set_presence(self, workspace: str, agent_id: str, presence: str, *,
                     if_disconnected_at: str | None = None) -> Agent | None:
        item = AgentItem(workspace, f"AGENT#{agent_id}")
        condition = AgentItem.pk.exists()
        if if_disconnected_at is not None:
            condition &= (AgentItem.connections == 0) & (AgentItem.disconnectedAt == if_disconnected_at)
        try:
            item.update(actions=[AgentItem.presence.set(presence)], condition=condition)
        except UpdateError:
            return None
        return item.domain()

    def settings(self, workspace: str) -> dict:
        item = _get(WorkspaceItem, workspace, "WORKSPACE")
        return dict(item.settings or {}) if isinstance(item, WorkspaceItem) else {}

    def put_settings(self, workspace: str, settings: dict) -> None:
        WorkspaceItem(workspace, "WORKSPACE").update(actions=[WorkspaceItem.settings.set(settings)],
                                                     condition=WorkspaceItem.pk.exists())

    def bot_settings(self, workspace: str) -> dict:
        item = _get(WorkspaceItem, workspace, "WORKSPACE")
        return dict(item.bot or {}) if isinstance(item, WorkspaceItem) else {}

    def put_bot_settings(self, workspace: str, settings: dict) -> None:
        WorkspaceItem(workspace, "WORKSPACE").update(actions=[WorkspaceItem.bot.set(settings)],
                                                     condition=WorkspaceItem.pk.exists())

    def survey_settings(self, workspace: str) -> dict:
        item = _get(WorkspaceItem, workspace, "WORKSPACE")
        return dict(item.survey or {}) if isinstance(item, WorkspaceItem) else {}

    def put_survey_settings(self, workspace: str, settings: dict) -> None:
        WorkspaceItem(workspace, "WORKSPACE").update(actions=[WorkspaceItem.survey.set(settings)],
                                                     condition=WorkspaceItem.pk.exists())

    def privacy_settings(self, workspace: str) -> dict:
        item = _get(WorkspaceItem, workspace, "WORKSPACE")
        return dict(item.privacy or {}) if isinstance(item, WorkspaceItem) else {}

    def put_privacy_settings(self, workspace: str, settings: dict) -> None:
        WorkspaceItem(workspace, "WORKSPACE").update(actions=[WorkspaceItem.privacy.set(settings)],
                                                     condition=WorkspaceItem.pk.exists())

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
        if pointer is not None and pointer.expiresAt and pointer.expiresAt <= time.time():
            return None  # past its retention (DynamoDB's TTL deletes within days): a new conversation replaces it
        return pointer.conversationId if pointer else None

    def create_conversation(self, conversation: Conversation, connections: list[ConnectionRef]) -> None:
        ws = conversation.workspace
        if conversation.retention_days is None:  # the workspace's data protection settings (kefu.privacy)
            from ..privacy import PrivacySettings

            privacy = PrivacySettings.parse(self.privacy_settings(ws))
            # anonymous: chosen by the visitor (frames.MessageFrame.anonymous) or for everyone by the workspace
            conversation.retention_days = privacy.retention_days
            conversation.anonymous = conversation.anonymous or privacy.anonymous
            conversation.mask_pii = privacy.mask_pii
        if conversation.anonymous:  # anonymous consultation: the random customer id, nothing else
            conversation.customer_name, conversation.customer_tags = "", ()
        expires = _expires(conversation)
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
            listKey=ws,
            group=conversation.group,
            language=conversation.language,
            retentionDays=conversation.retention_days,
            anonymous=conversation.anonymous or None,
            maskPii=conversation.mask_pii or None,
            expiresAt=expires,
        )
        pointer = OpenPointer(f"{ws}#U#{conversation.customer_id}", "OPEN", conversationId=conversation.id,
                              expiresAt=expires)
        try:
            with self._tx() as tx:
                # a pointer past its retention is no open conversation (open_conversation_id)
                tx.save(pointer, condition=OpenPointer.pk.does_not_exist() | (OpenPointer.expiresAt <= int(time.time())))
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

    def conversations_of_customer(self, workspace: str, customer_id: str, limit: int) -> list[Conversation]:
        """Newest first, across channels (the byCustomer index)."""
        items = ConversationItem.by_customer.query(f"{workspace}#{customer_id}", scan_index_forward=False, limit=limit)
        return [i.domain() for i in items if isinstance(i, MetaItem)]

    def list_conversations(self, workspace: str, filters: dict, cursor: str | None,
                           limit: int) -> tuple[list[Conversation], str | None]:
        """Newest first; filters status and channel (attribute filters), customerId (the byCustomer index).
        The cursor is opaque and bound to the workspace and the list."""
        from .cursors import decode, encode

        customer = filters.get("customerId")
        index, hash_value, hash_name = ((ConversationItem.by_customer, f"{workspace}#{customer}", "customerKey")
                                        if customer else (ConversationItem.by_workspace, workspace, "listKey"))
        condition = None
        for name, attribute in (("status", MetaItem.status), ("channel", MetaItem.channel)):
            if filters.get(name):
                clause = attribute == filters[name]
                condition = clause if condition is None else condition & clause
        results = index.query(hash_value, filter_condition=condition, scan_index_forward=False, limit=limit,
                              page_size=max(limit, 50), last_evaluated_key=decode(cursor, {hash_name: hash_value}))
        items = [i.domain() for i in results if isinstance(i, MetaItem)]
        last = results.last_evaluated_key
        return items, (encode(last) if last and len(items) == limit else None)

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
        expires = _expires(conversation)  # kefu.privacy: the workspace's retention, from now
        try:
            with self._tx() as tx:
                tx.save(DedupItem(pk, f"USED#{sender_key}#{message.client_message_id}", seq=message.seq,
                                  expiresAt=expires),
                        condition=DedupItem.pk.does_not_exist())
                actions = [MetaItem.lastSeq.set(message.seq), MetaItem.updatedAt.set(message.created_at)]
                if expires:  # the conversation outlives its newest message
                    actions.append(MetaItem.expiresAt.set(expires))
                if message.sender.get("role") == "agent":  # kept from the first one on (if_not_exists)
                    actions.append(MetaItem.firstResponseAt.set(MetaItem.firstResponseAt | message.created_at))
                tx.update(
                    MetaItem(pk, "META"),
                    actions=actions,
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
                        senderName="" if conversation.anonymous and message.sender.get("role") == "customer"
                        else message.sender.get("name") or "",
                        text=message.text,
                        createdAt=message.created_at,
                        meta=message.meta,
                        channel=None if message.channel == "web" else message.channel,
                        pii=message.pii,
                        expiresAt=expires,
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

    def get_message(self, workspace: str, conversation_id: str, seq: int) -> Message | None:
        item = _get(MessageItem, conv_pk(workspace, conversation_id), msg_sk(seq))
        return item.domain(conversation_id) if isinstance(item, MessageItem) else None

    # the bot ------------------------------------------------------------

    def record_csat(self, conversation: Conversation, csat: dict) -> None:
        """Once per conversation, and only once it is closed; StateConflict otherwise."""
        _update_meta(conversation, [MetaItem.csat.set(csat), MetaItem.updatedAt.set(now_iso())],
                     (MetaItem.status == "closed") & MetaItem.csat.does_not_exist())

    def remember(self, conversation: Conversation, bot: dict) -> None:
        """Keep the bot's memory (slots, turns) while the bot still has the conversation."""
        _update_meta(conversation, [MetaItem.bot.set(bot)], MetaItem.status == "bot")

    def leave_bot(self, conversation: Conversation, suggestion: dict | None) -> None:
        """The bot lets go: the conversation is open for routing, with the answer it suggests (if any)."""
        actions = [MetaItem.status.set("open"), MetaItem.updatedAt.set(now_iso())]
        if suggestion is not None:
            actions += [MetaItem.suggestion.set(suggestion), MetaItem.suggestionId.set(suggestion["id"])]
        _update_meta(conversation, actions, MetaItem.status == "bot")

    def clear_suggestion(self, conversation: Conversation, suggestion_id: str) -> None:
        """Raises StateConflict unless this suggestion was still waiting for the agent."""
        _update_meta(conversation, [MetaItem.suggestion.remove(), MetaItem.suggestionId.remove()],
                     MetaItem.suggestionId == suggestion_id)

    def record_rating(self, conversation: Conversation, seq: int, article_id: str, helpful: bool) -> bool:
        """The customer's vote on one bot answer; False when that answer was already rated."""
        item = RatingItem(conv_pk(conversation.workspace, conversation.id), f"RATE#{seq:012d}", helpful=helpful,
                          articleId=article_id, ratedAt=now_iso(), expiresAt=_expires(conversation))
        try:
            item.save(condition=RatingItem.pk.does_not_exist())
        except PutError as error:
            if _condition_failed(error):
                return False
            raise
        return True

    def rating(self, conversation: Conversation, seq: int) -> bool | None:
        item = _get(RatingItem, conv_pk(conversation.workspace, conversation.id), f"RATE#{seq:012d}")
        return bool(item.helpful) if isinstance(item, RatingItem) else None

    def record_miss(self, workspace: str, miss: dict) -> None:
        """A question the bot could not answer (maintenance groups them into candidate articles)."""
        day = now_iso()[:10]
        MissItem(f"{workspace}#MISS", f"{day}#{new_id('q')}", miss=miss,
                 expiresAt=int(time.time()) + MISS_RETENTION_S).save()

    def misses(self, workspace: str, since_day: str, limit: int) -> list[dict]:
        return [i.miss for i in MissItem.query(f"{workspace}#MISS", MissItem.sk >= since_day, scan_index_forward=False,
                                               limit=limit)]

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

    def assign(self, conversation: Conversation, agent: Agent, previous_agent_id: str | None,
               decision: dict | None = None, from_queue: QueueEntry | None = None,
               presences: tuple[str, ...] = ("online",)) -> None:
        ws, now = conversation.workspace, now_iso()
        meta = MetaItem(conv_pk(ws, conversation.id), "META")
        owner: Condition = MetaItem.agentId == previous_agent_id if previous_agent_id else MetaItem.agentId.does_not_exist()
        actions = [
            MetaItem.agentId.set(agent.id),
            MetaItem.agentName.set(agent.name),
            MetaItem.agentKey.set(f"{ws}#{agent.id}"),
            MetaItem.status.set("assigned"),
            MetaItem.assignedAt.set(now),
            MetaItem.updatedAt.set(now),
            MetaItem.queueKey.remove(),
            MetaItem.group.set(conversation.group) if conversation.group else MetaItem.group.remove(),
            MetaItem.priority.set(conversation.priority),
        ]
        if conversation.language:
            actions.append(MetaItem.language.set(conversation.language))
        if decision is not None:
            actions.append(MetaItem.routing.set(decision))
        try:
            with self._tx() as tx:
                tx.update(
                    AgentItem(ws, f"AGENT#{agent.id}"),
                    actions=[AgentItem.load.add(1), AgentItem.lastAssignedAt.set(now)],
                    condition=AgentItem.presence.is_in(*presences) & (AgentItem.connections > 0)
                    & (AgentItem.load < agent.max_concurrent) & (AgentItem.maxConcurrent == agent.max_concurrent),
                )
                if previous_agent_id:
                    tx.update(
                        AgentItem(ws, f"AGENT#{previous_agent_id}"),
                        actions=[AgentItem.load.add(-1)],
                        condition=AgentItem.load > 0,
                    )
                if from_queue is not None:
                    tx.delete(QueueItem(queue_pk(ws), from_queue.sort_key), condition=QueueItem.pk.exists())
                    owner &= MetaItem.queueKey == from_queue.sort_key
                tx.update(meta, actions=actions, condition=owner & (MetaItem.status != "closed"))
        except TransactWriteError:
            raise AssignConflict() from None

    def enqueue(self, conversation: Conversation, entry: QueueEntry, previous_agent_id: str | None,
                decision: dict) -> None:
        ws, now = conversation.workspace, now_iso()
        owner: Condition = MetaItem.agentId == previous_agent_id if previous_agent_id else MetaItem.agentId.does_not_exist()
        actions = [
            MetaItem.status.set("queued"),
            MetaItem.queueKey.set(entry.sort_key),
            MetaItem.queuedAt.set(MetaItem.queuedAt | now),
            MetaItem.updatedAt.set(now),
            MetaItem.routing.set(decision),
            MetaItem.priority.set(entry.priority),
            MetaItem.agentId.remove(),
            MetaItem.agentName.remove(),
            MetaItem.agentKey.remove(),
        ]
        if entry.queue != "*":
            actions.append(MetaItem.group.set(entry.queue))
        if entry.language:
            actions.append(MetaItem.language.set(entry.language))
        item = QueueItem(queue_pk(ws), entry.sort_key, customerId=entry.customer_id, language=entry.language,
                         customerName=entry.customer_name or None)
        try:
            with self._tx() as tx:
                tx.save(item, condition=QueueItem.pk.does_not_exist())
                if previous_agent_id:
                    tx.update(AgentItem(ws, f"AGENT#{previous_agent_id}"), actions=[AgentItem.load.add(-1)],
                              condition=AgentItem.load > 0)
                tx.update(MetaItem(conv_pk(ws, conversation.id), "META"), actions=actions,
                          condition=owner & MetaItem.queueKey.does_not_exist() & (MetaItem.status != "closed"))
        except TransactWriteError:
            raise StateConflict() from None

    def queue_entries(self, workspace: str) -> list[QueueEntry]:
        return [i.domain(workspace) for i in QueueItem.query(queue_pk(workspace), consistent_read=True)
                if isinstance(i, QueueItem)]

    def leave_queue(self, conversation: Conversation, entry_key: str, reason: str) -> None:
        self._finish(conversation, reason, now_iso(), entry_key=entry_key)

    def close(self, conversation: Conversation, reason: str, closed_at: str) -> None:
        self._finish(conversation, reason, closed_at, entry_key=conversation.queue_key)

    def _finish(self, conversation: Conversation, reason: str, closed_at: str, *, entry_key: str | None) -> None:
        """Close a conversation in one transaction with everything that hangs on it being open."""
        ws = conversation.workspace
        condition = MetaItem.status != "closed"
        condition &= (MetaItem.agentId == conversation.agent_id) if conversation.agent_id else MetaItem.agentId.does_not_exist()
        condition &= (MetaItem.queueKey == entry_key) if entry_key else MetaItem.queueKey.does_not_exist()
        actions = [MetaItem.status.set("closed"), MetaItem.closedAt.set(closed_at),
                   MetaItem.closeReason.set(reason), MetaItem.updatedAt.set(closed_at),
                   MetaItem.agentKey.remove(), MetaItem.queueKey.remove()]
        if _expires(conversation):  # kept (with the CSAT rating to come) for the retention from its close on
            actions.append(MetaItem.expiresAt.set(_expires(conversation)))
        try:
            with self._tx() as tx:
                tx.update(
                    MetaItem(conv_pk(ws, conversation.id), "META"),
                    actions=actions,
                    condition=condition,
                )
                if conversation.agent_id:
                    tx.update(AgentItem(ws, f"AGENT#{conversation.agent_id}"), actions=[AgentItem.load.add(-1)],
                              condition=AgentItem.load > 0)
                if entry_key:
                    tx.delete(QueueItem(queue_pk(ws), entry_key), condition=QueueItem.pk.exists())
                # the META condition proves this conversation is the customer's open one: the pointer is ours
                tx.delete(OpenPointer(f"{ws}#U#{conversation.customer_id}", "OPEN"))
        except TransactWriteError:
            raise StateConflict() from None

    def record_handle_time(self, workspace: str, queue: str, handle_ms: int) -> None:
        hour = now_iso()[:13]
        HandleStat(workspace, f"HANDLE#{hour}#{queue}").update(actions=[
            HandleStat.totalMs.add(max(0, handle_ms)), HandleStat.count.add(1),
            HandleStat.expiresAt.set(int(time.time()) + HANDLE_STATS_RETENTION_S)])

    def handle_stats(self, workspace: str) -> dict[str, tuple[int, int]]:
        since = time.strftime("%Y-%m-%dT%H", time.gmtime(time.time() - HANDLE_STATS_WINDOW_S))
        totals: dict[str, tuple[int, int]] = {}
        for item in HandleStat.query(workspace, HandleStat.sk.between(f"HANDLE#{since}", "HANDLE#~")):
            queue = item.sk.split("#", 2)[2]
            total, count = totals.get(queue, (0, 0))
            totals[queue] = (total + int(item.totalMs), count + int(item.count))
        return totals

    def add_counter(self, workspace: str, name: str, n: int = 1) -> None:
        from ..metrics import METRIC_RETENTION_S

        MetricItem(workspace, f"{now_iso()[:13]}#{name}").update(
            actions=[MetricItem.value.add(n), MetricItem.expiresAt.set(int(time.time()) + METRIC_RETENTION_S)])

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


MISS_RETENTION_S = 90 * 24 * 3600


class MissItem(Model):
    """pk "{ws}#MISS", sk "{day}#{id}": one question the bot handed over without a confident answer."""

    Meta = _meta(schema.METRICS)
    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    miss = JSONAttribute()
    expiresAt = NumberAttribute(null=True)


HANDLE_STATS_WINDOW_S = 2 * 3600  # "recent" handle times: this hour and the two before
HANDLE_STATS_RETENTION_S = 2 * 24 * 3600


class HandleStat(Model):
    """pk "{ws}", sk "HANDLE#{hour}#{queue}": handle time totals of conversations closed that hour."""

    Meta = _meta(schema.METRICS)
    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    totalMs = NumberAttribute(default=0)
    count = NumberAttribute(default=0)
    expiresAt = NumberAttribute(null=True)


class DynamoMetrics:
    def counters(self, workspace: str, prefix: str = "") -> dict[str, int]:
        condition = MetricItem.sk.startswith(prefix) if prefix else None
        return {i.sk: int(i.value) for i in MetricItem.query(workspace, condition)}

    def hourly(self, workspace: str, first_hour: str, last_hour: str) -> dict[str, int]:
        """The hourly counters ("2026-11-21T15#bot.answer") from first_hour to last_hour, both included."""
        items = MetricItem.query(workspace, MetricItem.sk.between(first_hour + "#", last_hour + "#~"))
        return {i.sk: int(i.value) for i in items if i.value is not None}
