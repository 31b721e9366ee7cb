"""The Notifier port on the API Gateway @connections management API."""

from __future__ import annotations

import json
import logging

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)


class ConnectionsApi:
    def __init__(self, endpoint_url: str):
        # short timeouts: one slow socket must not hold up a whole fan-out
        config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"},
                        max_pool_connections=32)
        self._client = boto3.client("apigatewaymanagementapi", endpoint_url=endpoint_url, config=config)

    def send(self, connection_id: str, frame: dict) -> bool:
        data = json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            self._client.post_to_connection(ConnectionId=connection_id, Data=data)
            return True
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code in ("GoneException", "410"):
                return False
            # a delivery failure must not fail the send for anybody else; the receiver syncs on reconnect
            log.warning("post_to_connection failed", extra={"code": code, "connection_id": connection_id})
            return True
        except BotoCoreError as error:
            # no answer in time, a reset connection (after botocore's retries): the same, the connection may
            # well be alive; raising here failed the whole send (the sender got an error for a stored message,
            # the rest of the fan-out's bookkeeping and the bot's turn never ran)
            log.warning("post_to_connection failed", extra={"code": type(error).__name__,
                                                              "connection_id": connection_id})
            return True
