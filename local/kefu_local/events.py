"""Lambda events in the exact shapes API Gateway and DynamoDB Streams produce.

tests/unit/test_events.py validates them against Powertools' parser models, and events/
holds samples made by these builders.
"""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from datetime import datetime, timezone

ACCOUNT = "000000000000"
REGION = "us-east-1"
WS_API_ID = "kefulocal1"
REST_API_ID = "kefulocal2"


def new_connection_id() -> str:
    """API Gateway connection ids look like 'L0SM9cOFvHcCIhw=' (16 characters of base64)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(11)).decode()


def _request_time(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")


def _ws_context(conn: dict, route_key: str, event_type: str, domain: str, stage: str) -> dict:
    now = int(time.time() * 1000)
    context = {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": secrets.token_urlsafe(12),
        "requestTime": _request_time(now),
        "messageDirection": "IN",
        "stage": stage,
        "connectedAt": conn["connectedAt"],
        "requestTimeEpoch": now,
        "identity": {"sourceIp": conn["sourceIp"], "userAgent": conn.get("userAgent") or ""},
        "requestId": secrets.token_urlsafe(12),
        "domainName": domain,
        "connectionId": conn["connectionId"],
        "apiId": WS_API_ID,
    }
    if conn.get("authorizer") is not None:
        context["authorizer"] = conn["authorizer"]
    return context


def ws_authorizer_request(conn: dict, headers: dict, query: dict, domain: str, stage: str) -> dict:
    context = _ws_context(conn, "$connect", "CONNECT", domain, stage)
    context.pop("authorizer", None)
    return {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{WS_API_ID}/{stage}/$connect",
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()},
        "stageVariables": {},
        "requestContext": context,
    }


def ws_connect(conn: dict, headers: dict, query: dict, domain: str, stage: str) -> dict:
    return {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()},
        "requestContext": _ws_context(conn, "$connect", "CONNECT", domain, stage),
        "isBase64Encoded": False,
    }


def ws_message(conn: dict, route_key: str, body: str, domain: str, stage: str, *, binary: bool = False) -> dict:
    context = _ws_context(conn, route_key, "MESSAGE", domain, stage)
    context["messageId"] = secrets.token_urlsafe(12)
    return {"requestContext": context, "body": body, "isBase64Encoded": binary}


def ws_disconnect(conn: dict, status_code: int, reason: str, domain: str, stage: str) -> dict:
    context = _ws_context(conn, "$disconnect", "DISCONNECT", domain, stage)
    context["disconnectStatusCode"] = status_code
    context["disconnectReason"] = reason
    headers = {"Host": domain, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    return {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": context,
        "isBase64Encoded": False,
    }


def rest_request(method: str, path: str, headers: dict, query: dict[str, list[str]], body: bytes | None,
                 source_ip: str, domain: str, stage: str) -> dict:
    """API Gateway REST API (v1) proxy integration event for resource /{proxy+}."""
    now = int(time.time() * 1000)
    text, is_b64 = None, False
    if body:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text, is_b64 = base64.b64encode(body).decode(), True
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "resourceId": "proxy",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "extendedRequestId": secrets.token_urlsafe(12),
            "requestTime": _request_time(now),
            "path": f"/{stage}{path}",
            "accountId": ACCOUNT,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": domain.split(".")[0],
            "requestTimeEpoch": now,
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": source_ip, "userAgent": headers.get("User-Agent", "")},
            "domainName": domain,
            "apiId": REST_API_ID,
        },
        "body": text,
        "isBase64Encoded": is_b64,
    }


class LambdaContext:
    """The parts of the Lambda context object that handlers and Powertools use."""

    def __init__(self, function_name: str, memory_mb: int, timeout_s: int):
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"{datetime.now(timezone.utc):%Y/%m/%d}/[$LATEST]{secrets.token_hex(16)}"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def sqs_event(messages: list[dict], queue_arn: str, region: str = "us-east-1") -> dict:
    """An SQS event source mapping's batch, from ReceiveMessage results (AttributeNames=All)."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {k: str(v) for k, v in (m.get("Attributes") or {}).items()},
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }
