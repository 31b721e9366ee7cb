"""Builds the adapters from the environment, once per container (warm invocations reuse them).

Only endpoint configuration differs between AWS and the local stack: table names come from
the variables named in kefu.schema, AWS endpoints from AWS_ENDPOINT_URL (local only).
"""

from __future__ import annotations

import os
from functools import lru_cache

from . import schema


@lru_cache(maxsize=1)
def store():
    from .adapters.dynamodb import DynamoStore

    return DynamoStore()


@lru_cache(maxsize=1)
def analytics_store():
    from .adapters.analytics_store import AnalyticsStore

    return AnalyticsStore()


@lru_cache(maxsize=1)
def metrics_store():
    from .adapters.dynamodb import DynamoMetrics

    return DynamoMetrics()


@lru_cache(maxsize=1)
def notifier():
    from .adapters.connections_api import ConnectionsApi

    return ConnectionsApi(os.environ[schema.ENV_WS_CALLBACK_URL])


@lru_cache(maxsize=1)
def timers():
    from .adapters.sqs import SqsTimers

    return SqsTimers(os.environ[schema.ENV_TIMERS_QUEUE_URL])


class _OnFirstUse:
    """Builds an adapter when it is first used. The stack gives a function only the endpoints its
    permissions allow (no queue URL where it never sends), so wiring must not read them at import."""

    def __init__(self, build):
        self._build = build
        self._target = None

    def __getattr__(self, name):
        if self._target is None:
            self._target = self._build()
        return getattr(self._target, name)


@lru_cache(maxsize=1)
def delivery():
    from .delivery import Delivery

    return Delivery(store(), _OnFirstUse(notifier))


@lru_cache(maxsize=1)
def router():
    from .router import Router

    return Router(store(), delivery(), _OnFirstUse(timers), tickets=_OnFirstUse(tickets))


@lru_cache(maxsize=1)
def conversation_service():
    from .conversations import ConversationService

    # the bot (and numpy with it) loads on the first message of a conversation, not in $connect or sync
    return ConversationService(store(), delivery(), router(), _OnFirstUse(bot), _OnFirstUse(attachment_store),
                               experiments=_OnFirstUse(experiment_store), vault=_OnFirstUse(pii_vault))


@lru_cache(maxsize=1)
def experiment_store():
    from .adapters.experiment_store import ExperimentStore

    return ExperimentStore()


@lru_cache(maxsize=1)
def bot():
    from .bot import Bot

    return Bot(store(), delivery(), router(), answerer(), knowledge_store())


def signing_key() -> str:
    from .adapters.secrets import signing_key as fetch

    return fetch(os.environ[schema.ENV_JWT_SECRET_ID])


@lru_cache(maxsize=1)
def knowledge_store():
    from .adapters.knowledge_store import KnowledgeStore

    return KnowledgeStore()


@lru_cache(maxsize=1)
def search_index():
    from .adapters.search_index import SearchIndex

    return SearchIndex()


@lru_cache(maxsize=1)
def model_blobs():
    from .adapters.model_store import S3ModelStore

    return S3ModelStore()


@lru_cache(maxsize=1)
def answerer():
    from .answering.answerer import Answerer, Models

    return Answerer(Models(knowledge_store(), _OnFirstUse(model_blobs)), _OnFirstUse(search_index))


@lru_cache(maxsize=1)
def trainer():
    from .answering.answerer import Trainer

    return Trainer(knowledge_store(), model_blobs())


@lru_cache(maxsize=1)
def maintainer():
    from .answering.maintenance import Maintainer

    return Maintainer(knowledge_store(), store())


@lru_cache(maxsize=1)
def ticket_store():
    from .adapters.ticket_store import DynamoTicketStore

    return DynamoTicketStore()


@lru_cache(maxsize=1)
def tickets():
    from .tickets import TicketService

    return TicketService(ticket_store(), store(), store(), retention_days=retention_days)


def retention_days(workspace: str) -> int:
    """The workspace's retention in days (kefu.privacy; the default when it never set one)."""
    from .privacy import PrivacySettings

    return PrivacySettings.parse(store().privacy_settings(workspace)).retention_days


@lru_cache(maxsize=1)
def escalations():
    from .adapters.escalations import StepFunctionsEscalations

    return StepFunctionsEscalations(os.environ[schema.ENV_ESCALATION_ARN])


@lru_cache(maxsize=1)
def api_keys():
    from .adapters.api_keys import ApiKeys

    return ApiKeys(os.environ.get(schema.ENV_USAGE_PLAN_NAME))


def webhooks_allow_private() -> bool:
    return os.environ.get(schema.ENV_WEBHOOKS_ALLOW_PRIVATE) == "1"


@lru_cache(maxsize=1)
def webhook_store():
    from .adapters.webhook_store import DynamoWebhookStore

    return DynamoWebhookStore()


@lru_cache(maxsize=1)
def webhook_dispatcher():
    from .webhooks import Dispatcher, HttpSender

    return Dispatcher(HttpSender(allow_private=webhooks_allow_private()), webhook_store())


@lru_cache(maxsize=1)
def channel_store():
    from .adapters.channel_store import ChannelStore

    return ChannelStore()


@lru_cache(maxsize=1)
def attachment_store():
    from .adapters.attachment_store import S3AttachmentStore

    return S3AttachmentStore()


# ---- audit log and step-up (issue 8)
@lru_cache(maxsize=1)
def audit_store():
    from .adapters.audit_store import AuditStore

    return AuditStore()


@lru_cache(maxsize=1)
def step_up_store():
    from .adapters.audit_store import StepUpStore

    return StepUpStore()
# ---- end audit log and step-up


@lru_cache(maxsize=1)
def pii_vault():
    from .adapters.pii_vault import KmsVault

    return KmsVault()
