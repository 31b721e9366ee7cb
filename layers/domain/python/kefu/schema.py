"""The one source of truth for table, index, route and function names.

The CDK stack (infra/) builds its resources from these definitions and the local
stack (local/) creates the same tables and routes from them, so the two cannot drift.
This module imports nothing beyond the standard library: the CDK app and the
Lambda cold start both read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# ---------------------------------------------------------------- DynamoDB


@dataclass(frozen=True)
class Key:
    name: str
    type: str = "S"  # S | N | B, as in AttributeDefinitions


@dataclass(frozen=True)
class Index:
    name: str
    partition_key: Key
    sort_key: Key | None = None


@dataclass(frozen=True)
class Table:
    id: str  # logical id: CDK construct id and the key of TABLES
    env_var: str  # environment variable that carries the physical name
    local_name: str  # physical name in the local stack
    partition_key: Key
    sort_key: Key | None = None
    indexes: tuple[Index, ...] = ()
    ttl_attribute: str | None = None
    stream: str | None = None  # StreamViewType, or None for no stream


CONVERSATIONS = Table(
    id="Conversations",
    env_var="KEFU_TABLE_CONVERSATIONS",
    local_name="kefu-conversations",
    # pk "{ws}#C#{conversationId}" holds META, CONN#{connectionId} (live fan-out
    # targets), MSG#{seq:012d}, RATE#{seq:012d} (the customer's vote on a bot answer) and
    # USED#{senderKey}#{clientMessageId} items (sorted after META,
    # so that the per-message Query from CONN# to META reads only the fan-out list and META);
    # pk "{ws}#U#{customerId}" holds the OPEN pointer to the customer's open conversation.
    partition_key=Key("pk"),
    sort_key=Key("sk"),
    indexes=(
        # sparse: only META items of conversations assigned to an agent and not closed
        Index("byAgent", Key("agentKey"), Key("openedAt")),
        # every conversation of a customer, across channels
        Index("byCustomer", Key("customerKey"), Key("openedAt")),
        # sparse (META items from issue 5 on): a workspace's conversations, newest first, for integrators' lists
        Index("byWorkspace", Key("listKey"), Key("openedAt")),
    ),
    ttl_attribute="expiresAt",
    stream="NEW_AND_OLD_IMAGES",  # webhooks tell an assignment or a close from the change of META
)

CONNECTIONS = Table(
    id="Connections",
    env_var="KEFU_TABLE_CONNECTIONS",
    local_name="kefu-connections",
    # pk "{ws}#{role}#{userId}", sk connectionId: every open socket of one person
    partition_key=Key("pk"),
    sort_key=Key("sk"),
    ttl_attribute="expiresAt",
)

# Rate limit counters (kefu.ratelimit, adapters/rate_counters.py) live in the Connections table, which the
# functions that check them (ws_connect, ws_message) write already: pk "#RL#{ws}#{role}#{userId}" (a person)
# or "#RL#{ws}#src#{digest}" (a source address, never stored as such), sk "MSG#{windowS}#{windowStart}"
# (messages) or "CON#{windowS}#{windowStart}" (new connections); attribute "n" counts the person's (or
# address's) events in the window, "c#{connectionId}#{slotStart}" one connection's in its shorter window;
# expiresAt (the TTL) ends them. Ids never contain "#" nor start with it, so these items never share a
# partition with a person's connections.
RATE_LIMITS = CONNECTIONS
RATE_LIMIT_PK_PREFIX = "#RL#"
# the limits of an environment (kefu.ratelimit.Limits.parse): empty for the defaults, "off", or JSON overrides
ENV_RATE_LIMITS = "KEFU_RATE_LIMITS"

DIRECTORY = Table(
    id="Directory",
    env_var="KEFU_TABLE_DIRECTORY",
    local_name="kefu-directory",
    # pk workspace id; sk "WORKSPACE" (name, routing settings) or "AGENT#{agentId}" (profile, presence,
    # connections, load); pk "{ws}#Q", sk "{queue}#{999-priority}#{arrivalMs}#{conversationId}": the
    # waiting conversations, in queue order within each queue (one Query reads the whole queue);
    # pk "{ws}#EXP", sk "EXP#{experimentId}": A/B experiments (adapters/experiment_store.py);
    # pk workspace id, sk "ERASED#{digest of workspace and customer id}": an erasure (kefu.privacy: the customer's
    # tokens issued at or before erasedAt are refused), read with the workspace by the $connect authorizer; it
    # expires (expiresAt) once no token it could refuse is still valid. No other Directory item sets expiresAt.
    partition_key=Key("pk"),
    sort_key=Key("sk"),
    ttl_attribute="expiresAt",
)

METRICS = Table(
    id="Metrics",
    env_var="KEFU_TABLE_METRICS",
    local_name="kefu-metrics",
    # pk "{ws}", sk "{hour}#{counter}": counters aggregated from the conversations stream;
    # sk "HANDLE#{hour}#{queue}": handle time totals of closed conversations (queue wait estimates);
    # pk "{ws}#MISS", sk "{day}#{id}": questions the bot could not answer (expire after 90 days)
    # pk "{ws}#EXP#{experimentId}", sk "N#{variantId}" (exposure / conversion counters), "X#{visitor}" (first
    # exposure), "C#{visitor}" (conversion, once); pk "{ws}#V#{visitor}", sk "EV#{eventId}": business events
    # (idempotent on the integrator's event id); pk "{ws}#SEEN" / "{ws}#BUY", sk visitor: seen / converted visitors
    partition_key=Key("pk"),
    sort_key=Key("sk"),
    ttl_attribute="expiresAt",
)

KNOWLEDGE = Table(
    id="Knowledge",
    env_var="KEFU_TABLE_KNOWLEDGE",
    local_name="kefu-knowledge",
    # pk "{ws}": sk "A#{articleId}" the articles (the source of truth; the search index and the
    # answering model are built from them by kb_indexer), sk "MODEL" the current answering model
    # (version, object key in the Models bucket, what it was trained on and its held-out scores),
    # sk "MAINTENANCE" the last maintenance report (kb_maintain, POST /kb/maintain)
    partition_key=Key("pk"),
    sort_key=Key("sk"),
    ttl_attribute="expiresAt",
    stream="NEW_AND_OLD_IMAGES",  # deletes need the old image to leave the index
)

TICKETS = Table(
    id="Tickets",
    env_var="KEFU_TABLE_TICKETS",
    local_name="kefu-tickets",
    # pk "{ws}#T#{ticketId}": sk "TICKET" the ticket with its event history (one item, so a change and its
    # event are one conditional write, also for the escalation state machine), sk "CM#{createdAt}#{id}" comments;
    # pk "{ws}", sk "TICKET_SETTINGS": SLA per priority, escalation group and levels
    partition_key=Key("pk"),
    sort_key=Key("sk"),
    indexes=(
        # sparse (TICKET items only): a workspace's tickets, newest first, for lists and filters
        Index("byWorkspace", Key("listKey"), Key("createdAt")),
        # a customer's tickets, for the profile
        Index("byCustomer", Key("customerKey"), Key("createdAt")),
    ),
    # a resolved or closed ticket and its comments expire the workspace's retention after that (kefu.retention);
    # open and pending tickets, and the settings item, never do
    ttl_attribute="expiresAt",
    stream="NEW_AND_OLD_IMAGES",  # escalation starts on a new deadline and stops on resolution
)

# ---- audit log (issue 8, kefu.audit): append-only
AUDIT = Table(
    id="Audit",
    env_var="KEFU_TABLE_AUDIT",
    local_name="kefu-audit",
    # pk "{ws}", sk "{at}#{entryId}" (at: ISO 8601 UTC with ms, so a Query reads newest first and a time range
    # is a key condition); written only with a conditional PutItem (attribute_not_exists), never updated or
    # deleted: functions get "appends" (PutItem only) and "queries" (Query only) on it, never reads / writes
    partition_key=Key("pk"),
    sort_key=Key("sk"),
    indexes=(
        Index("byActor", Key("actorKey"), Key("sk")),  # "{ws}#{actorType}:{actorId}"
        Index("byAction", Key("actionKey"), Key("sk")),  # "{ws}#{action}"
    ),
    ttl_attribute="expiresAt",  # kefu.audit.RETENTION_DAYS
)
# ---- end audit log

TABLES: dict[str, Table] = {
    t.id: t for t in (CONVERSATIONS, CONNECTIONS, DIRECTORY, METRICS, KNOWLEDGE, TICKETS, AUDIT)
}

# ---------------------------------------------------------------- S3


@dataclass(frozen=True)
class Bucket:
    id: str
    env_var: str  # environment variable that carries the bucket name
    local_name: str
    # browsers upload (presigned POST) and download (presigned GET) directly: CORS for the web origins
    browser_access: bool = False
    keyed_by: str = "workspace and version"  # what object keys are made of (why grants end in /*)


# The trained answering models, one object per workspace and version ("models/{ws}/{version}.npz").
MODELS = Bucket(id="Models", env_var="KEFU_MODELS_BUCKET", local_name="kefu-models")
# Files and images attached to messages ("{ws}/{conversationId}/{uuid}/{name}", kefu.attachments): browsers
# upload with a presigned POST from the api function and download with a presigned GET.
ATTACHMENTS = Bucket(id="Attachments", env_var="KEFU_ATTACHMENTS_BUCKET", local_name="kefu-attachments",
                     browser_access=True, keyed_by="workspace, conversation and a random id")
BUCKETS: dict[str, Bucket] = {b.id: b for b in (MODELS, ATTACHMENTS)}

# ---------------------------------------------------------------- OpenSearch

ENV_OPENSEARCH_URL = "KEFU_OPENSEARCH_URL"  # https://domain-endpoint on AWS (SigV4), http://127.0.0.1:port locally
ENV_OPENSEARCH_SIGV4 = "KEFU_OPENSEARCH_SIGV4"  # "1" on AWS: sign requests with the function's role
KB_INDEX = "kefu-kb"  # one index for every workspace's articles, filtered by workspace

# ---------------------------------------------------------------- SQS


@dataclass(frozen=True)
class Queue:
    id: str
    env_var: str  # environment variable that carries the queue URL
    local_name: str
    max_receives: int = 5  # then the message goes to the queue's dead-letter queue


# Delayed checks (an agent's grace period after the last connection drops, a customer who left the
# queue, a queue drain after an agent connects): SQS per-message delays of up to 15 minutes.
TIMERS = Queue(id="Timers", env_var="KEFU_TIMERS_QUEUE_URL", local_name="kefu-timers")
QUEUES: dict[str, Queue] = {q.id: q for q in (TIMERS,)}

# ---------------------------------------------------------------- Step Functions, SNS, EventBridge

ENV_ESCALATION_ARN = "KEFU_ESCALATION_STATE_MACHINE_ARN"  # the ticket escalation machine (escalation.py)
LOCAL_ESCALATION_NAME = "kefu-ticket-escalation"
LOCAL_ALERT_TOPIC = "kefu-alerts"  # SNS: escalation alerts (a ticket overdue at the top level, a failed step)
EVENT_SOURCE_TICKETS = "kefu.tickets"  # EventBridge source of ticket.escalated (default bus)

# ---------------------------------------------------------------- REST API keys

# the integrators' usage plan, by name (an id would make a dependency cycle: function -> plan -> stage ->
# methods -> function): keys issued by the api function join it
ENV_USAGE_PLAN_NAME = "KEFU_USAGE_PLAN_NAME"
# the REST API's CORS origins (comma-separated; default "*": bearer tokens and API keys, no cookies): the
# widget and the console call it from CloudFront's domain, the widget's proactive rules from shops' pages
ENV_CORS_ORIGINS = "KEFU_CORS_ORIGINS"
# "1" only in the local stack: outbound HTTP (webhook subscribers, a channel's API base URL) may go to loopback
ENV_WEBHOOKS_ALLOW_PRIVATE = "KEFU_WEBHOOKS_ALLOW_PRIVATE"
LOCAL_USAGE_PLAN_NAME = "kefu-integrators"
INTEGRATIONS_PREFIX = "/integrations"  # integrators' routes: an API key of one workspace, no user token

# ---------------------------------------------------------------- other names

ENV_WS_CALLBACK_URL = "KEFU_WS_CALLBACK_URL"  # the @connections management endpoint
ENV_JWT_SECRET_ID = "KEFU_JWT_SECRET_ID"  # Secrets Manager id of the token signing key
ENV_TIMERS_QUEUE_URL = TIMERS.env_var
LOCAL_JWT_SECRET_NAME = "kefu/local/jwt-signing-key"
# the KMS key that seals personal data masked out of stored messages (kefu.pii, adapters/pii_vault.py): functions
# with Function.pii "seal" may only encrypt with it, "open" may also decrypt
ENV_PII_KEY_ID = "KEFU_PII_KEY_ID"
LOCAL_PII_KEY_ALIAS = "alias/kefu-local-pii"
PII_CONTEXT_KEYS = ("kefu:workspace", "kefu:conversation")  # its encryption context; IAM requires both

# API Gateway WebSocket limits we enforce (and the local gateway emulates)
WS_MAX_FRAME_BYTES = 128 * 1024
WS_IDLE_TIMEOUT_S = 600
WS_MAX_CONNECTION_S = 2 * 3600
WS_ROUTE_SELECTION_EXPRESSION = "$request.body.action"

# ---------------------------------------------------------------- functions


@dataclass(frozen=True)
class Function:
    name: str  # folder under functions/, and the CDK construct id suffix
    description: str
    route_keys: tuple[str, ...] = ()  # WebSocket routes it serves
    reads: tuple[str, ...] = ()  # table ids it reads
    writes: tuple[str, ...] = ()  # table ids it writes (implies read)
    manage_connections: bool = False  # may call the @connections API
    needs_secret: bool = False  # reads the token signing key
    stream_of: str | None = None  # table id whose stream it consumes
    stream_batch_size: int | None = None  # records per stream batch (None: infra's default, 100)
    stream_batching_window_s: int | None = None  # seconds a stream batch may wait to fill (None: 1)
    sends_to: tuple[str, ...] = ()  # queue ids it sends messages to
    consumes: str | None = None  # queue id it is triggered by
    reads_buckets: tuple[str, ...] = ()  # bucket ids it reads objects from
    writes_buckets: tuple[str, ...] = ()  # bucket ids it writes objects to (implies read)
    search: str | None = None  # OpenSearch access: "read" (search) or "write" (index documents too)
    schedule: str | None = None  # an EventBridge schedule expression that invokes it ("rate(1 day)")
    escalations: bool = False  # starts and stops ticket escalation executions
    issues_api_keys: bool = False  # creates and deletes API Gateway keys in the integrators' usage plan
    erases_buckets: tuple[str, ...] = ()  # bucket ids it lists and deletes objects of (a customer's erasure, kefu.privacy)
    # append-only tables (the audit log): "appends" may only PutItem, "queries" may only Query (table and indexes)
    appends: tuple[str, ...] = ()
    queries: tuple[str, ...] = ()
    pii: str | None = None  # the PII key (ENV_PII_KEY_ID): "seal" (encrypt) or "open" (encrypt and decrypt)
    memory_mb: int = 256
    timeout_s: int = 10
    extra_env: dict[str, str] = field(default_factory=dict)


ROUTING_TABLES = ("Conversations", "Connections", "Directory", "Metrics")  # what the Router reads and writes

FUNCTIONS: tuple[Function, ...] = (
    Function(
        "ws_authorizer",
        "Validates the visitor or agent token on $connect",
        needs_secret=True,
        reads=("Directory",),
    ),
    Function(
        "ws_connect",
        "Registers a connection, attaches it to the person's open conversations; an agent comes online",
        route_keys=("$connect",),
        writes=("Conversations", "Connections", "Directory"),
        sends_to=("Timers",),
    ),
    Function(
        "ws_disconnect",
        "Forgets a connection; starts the grace period of an agent's last connection or a waiting customer's",
        route_keys=("$disconnect",),
        writes=("Conversations", "Connections", "Directory"),
        sends_to=("Timers",),
    ),
    Function(
        "ws_message",
        "Stores a message with the next sequence number and fans it out; the bot answers, takes ratings and "
        "agents' reviews of its suggestions; typing indicators",
        route_keys=("message", "typing", "rate", "suggestion"),
        writes=(*ROUTING_TABLES, "Knowledge"),  # Knowledge: rating counters and answers saved by agents
        reads_buckets=("Models", "Attachments"),  # Attachments: HeadObject of each attached file
        search="read",
        manage_connections=True,
        sends_to=("Timers",),  # the bot's handoffs route like any other conversation
        pii="seal",  # customers' messages in workspaces that mask personal data (kefu.pii)
        memory_mb=1024,  # the answering model (numpy) answers in a few ms with the vCPU share this buys
    ),
    Function(
        "ws_sync",
        "Returns the messages after a sequence number, and the caller's open conversations",
        route_keys=("sync", "inbox"),
        reads=("Conversations",),
    ),
    Function(
        "ws_route",
        "Routes a conversation to an agent or the queue; leaving the queue, closing, the offline form, CSAT",
        route_keys=("route", "cancel", "close", "offline_form", "csat"),
        writes=(*ROUTING_TABLES, "Tickets"),  # offline forms and unresolved closes become tickets
        manage_connections=True,
        sends_to=("Timers",),  # routing schedules checks (a customer who left the queue)
    ),
    Function(
        "ws_handoff",
        "Transfers a conversation to an agent or a group; supervisors assign by hand",
        route_keys=("handoff", "assign"),
        writes=ROUTING_TABLES,
        manage_connections=True,
        sends_to=("Timers",),  # routing schedules checks (a customer who left the queue)
    ),
    Function(
        "ws_presence",
        "Agents set online / away / offline; supervisors read the live queue and agents",
        route_keys=("presence", "snapshot"),
        writes=ROUTING_TABLES,
        manage_connections=True,
        sends_to=("Timers",),  # routing schedules checks (a customer who left the queue)
    ),
    Function(
        "ws_default",
        "Answers frames with no known action",
        route_keys=("$default",),
    ),
    Function(
        "api",
        "REST API for widgets, apps and integrators",
        reads=("Metrics",),  # the bot's unanswered questions (kb maintenance), webhook deliveries
        # Conversations: messages from other channels (REST, WeChat) go into conversations like the widget's
        writes=(*ROUTING_TABLES, "Knowledge", "Tickets"),
        reads_buckets=("Models",),  # the bot answers channel messages
        # upload tickets (a presigned POST is signed with the function's own PutObject right) and downloads
        writes_buckets=("Attachments",),
        erases_buckets=("Attachments",),  # DELETE /workspaces/{ws}/customers/{id}: the customer's files (kefu.privacy)
        search="read",
        manage_connections=True,  # the agent's console sees a channel message at once
        sends_to=("Timers",),
        needs_secret=True,
        issues_api_keys=True,
        appends=("Audit",),  # audit entries of sensitive actions (kefu.audit)
        queries=("Audit",),  # GET /workspaces/{ws}/audit (admins)
        pii="open",  # seals channel messages; reveals originals to the right role, and in a customer's export
        memory_mb=1024,  # the bot's model on channel messages
        timeout_s=29,
    ),
    Function(
        "stream_metrics",
        "Aggregates counters from the conversations stream",
        writes=("Metrics",),
        stream_of="Conversations",
        timeout_s=60,
    ),
    Function(
        "kb_indexer",
        "Keeps the knowledge base's search index and answering model in step with its articles",
        writes=("Knowledge",),
        stream_of="Knowledge",
        # a bulk import arrives as one batch: training the model is the expensive part, once per batch
        stream_batch_size=1000,
        stream_batching_window_s=5,
        writes_buckets=("Models",),
        search="write",
        # training is CPU-bound (memory buys vCPUs): a KB of ~10,000 English examples takes a few
        # minutes with sentence embeddings; the limit leaves room for larger ones
        memory_mb=3008,
        timeout_s=900,
    ),
    Function(
        "kb_maintain",
        "Daily: retires articles customers rate unhelpful, groups unanswered questions into candidate articles",
        reads=("Metrics",),
        writes=("Knowledge",),
        schedule="rate(1 day)",
        memory_mb=512,
        timeout_s=300,
    ),
    Function(
        "ticket_events",
        "Starts a ticket's escalation run for each new SLA deadline, stops it when the ticket is resolved; "
        "counts tickets opened and escalated (analytics); gives a finished ticket's comments its expiry",
        # Tickets: a finished ticket's comments get the ticket's expiry (kefu.retention)
        writes=("Metrics", "Tickets"),  # Metrics: the analytics aggregates (tickets opened, escalated, SLA breaches)
        stream_of="Tickets",
        escalations=True,
        timeout_s=60,
    ),
    Function(
        "channel_outbound",
        "Sends agents' and the bot's replies to customers on other channels (WeChat customer-service API)",
        reads=("Conversations", "Directory"),  # the conversation's channel; the workspace's channel settings
        stream_of="Conversations",
        timeout_s=60,
    ),
    Function(
        "webhooks_conversations",
        "Delivers signed webhooks for conversation events (messages, assignments, closes)",
        reads=("Directory",),  # the workspace's subscriptions
        writes=("Metrics",),  # delivery records (30 days)
        stream_of="Conversations",
        timeout_s=60,  # deliveries stop retrying after 50 s (webhooks.Dispatcher budget)
    ),
    Function(
        "webhooks_tickets",
        "Delivers signed webhooks for ticket events (created, status, comments, escalations)",
        reads=("Directory",),
        writes=("Metrics",),
        stream_of="Tickets",
        timeout_s=60,
    ),
    Function(
        "timers",
        "Delayed checks: an agent offline after the grace period, a customer who left the queue, queue drains",
        writes=ROUTING_TABLES,
        manage_connections=True,
        sends_to=("Timers",),  # a released conversation may schedule the next check
        consumes="Timers",
        timeout_s=60,
    ),
)

FUNCTIONS_BY_NAME: dict[str, Function] = {f.name: f for f in FUNCTIONS}
WS_ROUTES: dict[str, str] = {key: f.name for f in FUNCTIONS for key in f.route_keys}
WS_AUTHORIZER = "ws_authorizer"
REST_FUNCTION = "api"
# REST routes that browsers and apps call with a kefu token (or nothing) instead of an
# integrator's API key; every other route (the integrators', under INTEGRATIONS_PREFIX) requires a key
# of the usage plan, checked by API Gateway (and by the local gateway the same way).
REST_PUBLIC_ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/health"),
    ("POST", "/workspaces/{workspace}/visitor-tokens"),
    ("GET", "/workspaces/{workspace}/proactive"),  # the widget, before any token
    ("PUT", "/workspaces/{workspace}/proactive"),
    ("GET", "/workspaces/{workspace}/customer-quick-replies"),  # the customer chat's quick replies, before any token
    ("PUT", "/workspaces/{workspace}/customer-quick-replies"),
    ("GET", "/conversations/{conversation_id}/messages"),
    ("GET", "/conversations/{conversation_id}/messages/{seq}/original"),  # masked personal data, the right role only
    # attachments: an upload ticket (presigned POST) and a download link, for the conversation's participants
    ("POST", "/conversations/{conversation_id}/attachments"),
    ("GET", "/conversations/{conversation_id}/attachments/download"),
    # the console's admin screens: an agent token with the role each route needs
    ("GET", "/workspaces/{workspace}/agents"),
    ("PUT", "/workspaces/{workspace}/agents/{agent_id}"),
    ("GET", "/workspaces/{workspace}/routing"),
    ("PUT", "/workspaces/{workspace}/routing"),
    ("GET", "/workspaces/{workspace}/bot"),
    ("PUT", "/workspaces/{workspace}/bot"),
    ("GET", "/workspaces/{workspace}/survey"),  # the survey after a close: its NPS question on or off
    ("PUT", "/workspaces/{workspace}/survey"),
    # the knowledge base (agents read and ask, supervisors write)
    ("GET", "/workspaces/{workspace}/kb/articles"),
    ("GET", "/workspaces/{workspace}/kb/articles/{article_id}"),
    ("PUT", "/workspaces/{workspace}/kb/articles/{article_id}"),
    ("DELETE", "/workspaces/{workspace}/kb/articles/{article_id}"),
    ("POST", "/workspaces/{workspace}/kb/import"),
    ("POST", "/workspaces/{workspace}/kb/ask"),
    ("GET", "/workspaces/{workspace}/kb/model"),
    ("POST", "/workspaces/{workspace}/kb/maintain"),
    ("GET", "/workspaces/{workspace}/kb/maintenance"),
    # tickets (agents; customers see and comment on their own)
    ("POST", "/workspaces/{workspace}/tickets"),
    ("GET", "/workspaces/{workspace}/tickets"),
    ("GET", "/workspaces/{workspace}/tickets/{ticket_id}"),
    ("PATCH", "/workspaces/{workspace}/tickets/{ticket_id}"),
    ("POST", "/workspaces/{workspace}/tickets/{ticket_id}/status"),
    ("GET", "/workspaces/{workspace}/tickets/{ticket_id}/comments"),
    ("POST", "/workspaces/{workspace}/tickets/{ticket_id}/comments"),
    ("POST", "/workspaces/{workspace}/tickets/{ticket_id}/conversations"),
    ("GET", "/workspaces/{workspace}/ticket-settings"),
    ("PUT", "/workspaces/{workspace}/ticket-settings"),
    # the console's quick replies (agents read, supervisors write)
    ("GET", "/workspaces/{workspace}/quick-replies"),
    ("PUT", "/workspaces/{workspace}/quick-replies"),
    # the console's customer profile (agents)
    ("GET", "/workspaces/{workspace}/customers/{customer_id}"),
    # data protection (issue 8, kefu.privacy): retention settings, a customer's export and erasure (admins)
    ("GET", "/workspaces/{workspace}/privacy"),
    ("PUT", "/workspaces/{workspace}/privacy"),
    ("GET", "/workspaces/{workspace}/customers/{customer_id}/export"),
    ("DELETE", "/workspaces/{workspace}/customers/{customer_id}"),
    ("GET", "/workspaces/{workspace}/conversations"),
    ("GET", "/workspaces/{workspace}/metrics/hourly"),
    ("GET", "/workspaces/{workspace}/metrics"),
    # integrators' keys (admins)
    ("POST", "/workspaces/{workspace}/api-keys"),
    ("GET", "/workspaces/{workspace}/api-keys"),
    ("DELETE", "/workspaces/{workspace}/api-keys/{key_id}"),
    # channels: WeChat's callback (signed by WeChat, no token) and its settings (admins)
    ("GET", "/channels/wechat/{workspace}"),
    ("POST", "/channels/wechat/{workspace}"),
    ("GET", "/workspaces/{workspace}/channels/wechat"),
    ("PUT", "/workspaces/{workspace}/channels/wechat"),
    # webhook subscriptions (admins)
    ("POST", "/workspaces/{workspace}/webhooks"),
    ("GET", "/workspaces/{workspace}/webhooks"),
    ("GET", "/workspaces/{workspace}/webhooks/{subscription_id}"),
    ("PATCH", "/workspaces/{workspace}/webhooks/{subscription_id}"),
    ("DELETE", "/workspaces/{workspace}/webhooks/{subscription_id}"),
    ("POST", "/workspaces/{workspace}/webhooks/{subscription_id}/rotate-secret"),
    ("GET", "/workspaces/{workspace}/webhooks/{subscription_id}/deliveries"),
    # A/B experiments (supervisors read, admins write) and the widget's assignments and business events
    ("POST", "/workspaces/{workspace}/experiments"),
    ("GET", "/workspaces/{workspace}/experiments"),
    ("GET", "/workspaces/{workspace}/experiments/assignments"),
    ("GET", "/workspaces/{workspace}/experiments/{experiment_id}"),
    ("POST", "/workspaces/{workspace}/experiments/{experiment_id}/start"),
    ("POST", "/workspaces/{workspace}/experiments/{experiment_id}/stop"),
    ("POST", "/workspaces/{workspace}/events"),
    ("GET", "/workspaces/{workspace}/conversions"),
    # step-up verification and the audit log (issue 8): agents enrol and step up, admins read the log
    ("POST", "/workspaces/{workspace}/step-up/totp"),
    ("POST", "/workspaces/{workspace}/step-up"),
    ("GET", "/workspaces/{workspace}/audit"),
)
REST_STAGE = "v1"
WS_STAGE = "prod"
