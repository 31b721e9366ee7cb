"""Replies to customers on other channels: an agent's or the bot's new message in a conversation opened
on WeChat goes out through the WeChat customer-service API. Retryable failures (network, WeChat busy) fail
that record so the stream retries it and what follows; others are logged and skipped."""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecordEventName

from kefu import wiring
from kefu.channels import wechat
from kefu.logs import logger

REPLIES_FROM = ("agent", "bot")
_apis: dict[tuple[str, str, str], wechat.CustomerServiceApi] = {}  # access tokens are cached per account


def _api(settings: dict) -> wechat.CustomerServiceApi:
    key = (settings["appId"], settings["appSecret"], settings.get("apiBase") or wechat.DEFAULT_BASE_URL)
    if key not in _apis:
        _apis[key] = wechat.CustomerServiceApi(key[0], key[1], base_url=key[2])
    return _apis[key]


@logger.inject_lambda_context(clear_state=True)  # no keys from the previous invocation
@event_source(data_class=DynamoDBStreamEvent)
def handler(event: DynamoDBStreamEvent, context):
    sent = 0
    for record in event.records:
        change = record.dynamodb
        image = (change.new_image if change else None) or {}
        if record.event_name is not DynamoDBRecordEventName.INSERT or not str(image.get("sk", "")).startswith("MSG#"):
            continue
        if image.get("senderRole") not in REPLIES_FROM:
            continue
        workspace, _, conversation_id = str(image["pk"]).partition("#C#")
        conversation = wiring.store().get_conversation(workspace, conversation_id)
        if conversation is None or conversation.channel != wechat.CHANNEL or not conversation.customer_id.startswith("wx:"):
            continue
        settings = wiring.channel_store().get(workspace, wechat.CHANNEL)
        if settings is None:
            logger.warning("WeChat reply with no WeChat settings", extra={"workspace": workspace})
            continue
        try:
            sent += _api(settings).send_text(conversation.customer_id[3:], str(image["text"]))
        except wechat.ChannelError as error:
            logger.warning("WeChat reply failed", extra={"workspace": workspace, "code": error.code,
                                                          "retryable": error.retryable})
            if error.retryable:
                return {"batchItemFailures": [{"itemIdentifier": change.sequence_number}]}
    return {"batchItemFailures": [], "sent": sent}
