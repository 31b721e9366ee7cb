"""Per-workspace channel settings in the Directory table: pk "{ws}#CHANNELS", sk the channel ("wechat"); and
the console's quick-reply library: pk "{ws}#QUICK", sk "LIBRARY"; the customer chat's quick replies (kefu.chips):
pk "{ws}#QUICK", sk "CHAT"; the widget's proactive rules: pk
"{ws}#PROACTIVE", sk "RULES".
WeChat: the callback token, the Official Account's appId and appSecret (the table is encrypted with the
stack's KMS key; the secret is never returned by the API), and the API base URL (tests point it at a
fake on loopback)."""

from __future__ import annotations

import json
import os

import boto3

from .. import schema
from .dynamodb import _host, _region


class ChannelStore:
    def __init__(self) -> None:
        self.table = os.environ.get(schema.DIRECTORY.env_var, schema.DIRECTORY.local_name)
        self.dynamodb = boto3.client("dynamodb", region_name=_region(), endpoint_url=_host())

    def get(self, workspace: str, channel: str) -> dict | None:
        item = self.dynamodb.get_item(TableName=self.table,
                                      Key={"pk": {"S": f"{workspace}#CHANNELS"}, "sk": {"S": channel}}).get("Item")
        return {k: v["S"] for k, v in item.items() if k not in ("pk", "sk") and "S" in v} if item else None

    def put(self, workspace: str, channel: str, settings: dict[str, str]) -> None:
        item = {"pk": {"S": f"{workspace}#CHANNELS"}, "sk": {"S": channel}}
        item.update({k: {"S": v} for k, v in settings.items() if v is not None})
        self.dynamodb.put_item(TableName=self.table, Item=item)


    def quick_replies(self, workspace: str) -> list[dict]:
        return self._json_list(f"{workspace}#QUICK", "LIBRARY")

    def put_quick_replies(self, workspace: str, items: list[dict]) -> None:
        self._put_json_list(f"{workspace}#QUICK", "LIBRARY", items)

    def chat_chips(self, workspace: str) -> list[dict]:
        """The customer chat's quick replies (kefu.chips), in order."""
        return self._json_list(f"{workspace}#QUICK", "CHAT")

    def put_chat_chips(self, workspace: str, items: list[dict]) -> None:
        self._put_json_list(f"{workspace}#QUICK", "CHAT", items)

    def proactive_rules(self, workspace: str) -> list[dict]:
        """The widget's proactive invitations (kefu.proactive), in order."""
        return self._json_list(f"{workspace}#PROACTIVE", "RULES")

    def put_proactive_rules(self, workspace: str, rules: list[dict]) -> None:
        self._put_json_list(f"{workspace}#PROACTIVE", "RULES", rules)

    def _json_list(self, pk: str, sk: str) -> list[dict]:
        item = self.dynamodb.get_item(TableName=self.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}).get("Item")
        return json.loads(item["items"]["S"]) if item else []

    def _put_json_list(self, pk: str, sk: str, items: list[dict]) -> None:
        self.dynamodb.put_item(TableName=self.table, Item={
            "pk": {"S": pk}, "sk": {"S": sk}, "items": {"S": json.dumps(items, ensure_ascii=False, separators=(",", ":"))}})
