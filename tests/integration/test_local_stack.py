"""The local stack's speed-ups of moto answer exactly what moto itself would."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

pytestmark = pytest.mark.integration


def test_fast_reads_render_what_motos_serializer_renders(monkeypatch):
    from moto.dynamodb.responses import DynamoResult

    from kefu_local import moto_server

    original = DynamoResult.execute_result
    renders: list[tuple[str, str, str]] = []

    def both(self, context):
        status, headers, body = original(self, context)
        if context.operation_model.name in moto_server.FAST_READS:
            renders.append((context.operation_model.name, body, json.dumps(self.result)))
        return status, headers, body

    monkeypatch.setattr(DynamoResult, "execute_result", both)
    for name in ("AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "us-east-1" if name == "AWS_DEFAULT_REGION" else "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        ddb = boto3.client("dynamodb")
        ddb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                               {"AttributeName": "sk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                    {"AttributeName": "sk", "KeyType": "RANGE"}])
        for i in range(3):
            ddb.put_item(TableName="t", Item={
                "pk": {"S": "q"}, "sk": {"S": f"s{i}"}, "n": {"N": "1.50"}, "text": {"S": "中文 \"quoted\""},
                "l": {"L": [{"S": "a"}, {"N": "2"}]}, "m": {"M": {"x": {"BOOL": True}, "y": {"NULL": True}}},
                "ss": {"SS": ["a", "b"]}, "ns": {"NS": ["1", "2"]}})
        ddb.query(TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "q"}},
                  Limit=2)
        ddb.query(TableName="t", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "none"}})
        ddb.get_item(TableName="t", Key={"pk": {"S": "q"}, "sk": {"S": "s1"}})
        ddb.get_item(TableName="t", Key={"pk": {"S": "q"}, "sk": {"S": "missing"}})
    assert [name for name, _, _ in renders] == ["Query", "Query", "GetItem", "GetItem"]
    for name, motos, ours in renders:
        assert json.loads(ours) == json.loads(motos), name


def test_queries_read_one_partition_and_indexes_still_work(stack):
    ddb = stack.client("dynamodb")
    table = "kefu-conversations"
    for pk in ("p-a", "p-b"):
        for i in range(3):
            ddb.put_item(TableName=table, Item={"pk": {"S": pk}, "sk": {"S": f"MSG#{i}"},
                                                 "agentKey": {"S": f"ak-{pk}"}, "openedAt": {"S": f"2026-{i}"}})
    page = ddb.query(TableName=table, KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
                     ExpressionAttributeValues={":p": {"S": "p-a"}, ":s": {"S": "MSG#"}}, ScanIndexForward=False)
    assert [i["sk"]["S"] for i in page["Items"]] == ["MSG#2", "MSG#1", "MSG#0"]
    by_agent = ddb.query(TableName=table, IndexName="byAgent", KeyConditionExpression="agentKey = :a",
                         ExpressionAttributeValues={":a": {"S": "ak-p-b"}})
    assert {i["pk"]["S"] for i in by_agent["Items"]} == {"p-b"} and by_agent["Count"] == 3
