"""Integrators' API keys: API Gateway keys in the integrators' usage plan (so API Gateway checks and
throttles them before any Lambda runs), each bound to one workspace by a Directory item.

API Gateway passes the key's id to the api function (requestContext.identity.apiKeyId); the function
reads the workspace from pk "APIKEY#{keyId}". Listing a workspace's keys reads pk "{ws}#APIKEYS".
The key's value is shown once, when it is created; kefu stores no value and no hash of it.
"""

from __future__ import annotations

import os
import secrets
import time

import boto3
from botocore.exceptions import ClientError

from .. import schema
from ..models import now_iso
from .dynamodb import _host, _region

CACHE_S = 60.0  # a revoked key is refused by API Gateway at once; the workspace binding never changes


class ApiKeys:
    def __init__(self, usage_plan_name: str | None):
        self.usage_plan_name = usage_plan_name
        self._usage_plan_id: str | None = None
        self.table = os.environ.get(schema.DIRECTORY.env_var, schema.DIRECTORY.local_name)
        self.dynamodb = boto3.client("dynamodb", region_name=_region(), endpoint_url=_host())
        self._gateway = None
        self._cache: dict[str, tuple[float, str | None]] = {}

    @property
    def gateway(self):
        if self._gateway is None:
            self._gateway = boto3.client("apigateway", region_name=_region(),
                                         endpoint_url=os.environ.get("AWS_ENDPOINT_URL_APIGATEWAY")
                                         or os.environ.get("AWS_ENDPOINT_URL") or None)
        return self._gateway

    def usage_plan_id(self) -> str:
        if self._usage_plan_id is None:
            if not self.usage_plan_name:
                raise RuntimeError(f"{schema.ENV_USAGE_PLAN_NAME} is not set: this function cannot issue API keys")
            for page in self.gateway.get_paginator("get_usage_plans").paginate():
                for plan in page.get("items", []):
                    if plan["name"] == self.usage_plan_name:
                        self._usage_plan_id = plan["id"]
            if self._usage_plan_id is None:
                raise RuntimeError(f"no usage plan named {self.usage_plan_name!r}")
        return self._usage_plan_id

    def create(self, workspace: str, name: str, created_by: str) -> dict:
        plan = self.usage_plan_id()
        value = "kk_" + secrets.token_urlsafe(30)
        key = self.gateway.create_api_key(name=f"kefu-{workspace}-{name}"[:128], value=value, enabled=True,
                                          description=f"kefu integrator key of workspace {workspace}",
                                          tags={"kefu:workspace": workspace})
        self.gateway.create_usage_plan_key(usagePlanId=plan, keyId=key["id"], keyType="API_KEY")
        record = {"keyId": key["id"], "name": name, "createdAt": now_iso(), "createdBy": created_by}
        self.dynamodb.transact_write_items(TransactItems=[
            {"Put": {"TableName": self.table, "Item": {"pk": {"S": f"APIKEY#{key['id']}"}, "sk": {"S": "APIKEY"},
                                                      "workspace": {"S": workspace}}}},
            {"Put": {"TableName": self.table, "Item": {"pk": {"S": f"{workspace}#APIKEYS"}, "sk": {"S": key["id"]},
                                                      **{k: {"S": v} for k, v in record.items()}}}},
        ])
        return {**record, "key": value}

    def workspace_of(self, key_id: str) -> str | None:
        cached = self._cache.get(key_id)
        if cached and time.monotonic() - cached[0] < CACHE_S:
            return cached[1]
        item = self.dynamodb.get_item(TableName=self.table, Key={"pk": {"S": f"APIKEY#{key_id}"}, "sk": {"S": "APIKEY"}})
        workspace = item.get("Item", {}).get("workspace", {}).get("S")
        self._cache[key_id] = (time.monotonic(), workspace)
        return workspace

    def list(self, workspace: str) -> list[dict]:
        items = self.dynamodb.query(TableName=self.table, KeyConditionExpression="pk = :pk",
                                    ExpressionAttributeValues={":pk": {"S": f"{workspace}#APIKEYS"}})["Items"]
        return [{k: v["S"] for k, v in item.items() if k not in ("pk", "sk")} for item in items]

    def revoke(self, workspace: str, key_id: str) -> bool:
        if self.workspace_of(key_id) != workspace:
            return False
        try:
            self.gateway.delete_api_key(apiKey=key_id)
        except ClientError as error:
            if error.response["Error"]["Code"] != "NotFoundException":
                raise
        self.dynamodb.transact_write_items(TransactItems=[
            {"Delete": {"TableName": self.table, "Key": {"pk": {"S": f"APIKEY#{key_id}"}, "sk": {"S": "APIKEY"}}}},
            {"Delete": {"TableName": self.table, "Key": {"pk": {"S": f"{workspace}#APIKEYS"}, "sk": {"S": key_id}}}},
        ])
        self._cache.pop(key_id, None)
        return True
