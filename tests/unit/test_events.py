"""The local gateway's events have the exact AWS shapes (checked against Powertools' parser models),
and so do the samples in events/."""

import json
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventModel,
    APIGatewayWebSocketConnectEventModel,
    APIGatewayWebSocketDisconnectEventModel,
    APIGatewayWebSocketMessageEventModel,
    DynamoDBStreamModel,
)

from kefu_local import events

EVENTS = Path(__file__).resolve().parents[2] / "events"
CONN = {"connectionId": events.new_connection_id(), "connectedAt": 1795270000000, "sourceIp": "127.0.0.1",
        "userAgent": "test", "authorizer": {"workspace": "demo", "role": "customer", "userId": "c1"}}


def test_connection_ids_look_like_api_gateway_ones():
    ids = {events.new_connection_id() for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 16 and "/" not in i for i in ids)


def test_connect_event():
    event = events.ws_connect(CONN, {"Host": "x"}, {"token": "t"}, "localhost:8000", "prod")
    model = APIGatewayWebSocketConnectEventModel.model_validate(event)
    assert model.request_context.route_key == "$connect"


def test_message_event():
    event = events.ws_message(CONN, "message", '{"action":"message"}', "localhost:8000", "prod")
    model = APIGatewayWebSocketMessageEventModel.model_validate(event)
    assert model.request_context.event_type == "MESSAGE" and event["requestContext"]["authorizer"]["userId"] == "c1"


def test_disconnect_event():
    event = events.ws_disconnect(CONN, 1001, "Going away", "localhost:8000", "prod")
    model = APIGatewayWebSocketDisconnectEventModel.model_validate(event)
    assert model.request_context.disconnect_status_code == 1001


def test_rest_event():
    event = events.rest_request("GET", "/health", {"Host": "x"}, {"a": ["1"]}, None, "127.0.0.1", "x", "v1")
    model = APIGatewayProxyEventModel.model_validate(event)
    assert model.path == "/health" and event["queryStringParameters"] == {"a": "1"}


def _authorizer_request(event: dict) -> None:
    """A WebSocket REQUEST authorizer event: a $connect request context plus type and methodArn."""
    from aws_lambda_powertools.utilities.parser.models.apigw_websocket import (
        APIGatewayWebSocketConnectEventRequestContext,
    )

    assert event["type"] == "REQUEST" and event["methodArn"].startswith("arn:aws:execute-api:")
    assert "token" in event["queryStringParameters"]
    APIGatewayWebSocketConnectEventRequestContext.model_validate(event["requestContext"])


def test_authorizer_request():
    _authorizer_request(events.ws_authorizer_request(CONN, {"Host": "x"}, {"token": "t"}, "x", "prod"))


class _Check:
    def __init__(self, check):
        self.model_validate = check


MODELS = {
    "authorizer_request": _Check(_authorizer_request),
    "ws_connect": APIGatewayWebSocketConnectEventModel,
    "ws_message": APIGatewayWebSocketMessageEventModel,
    "ws_disconnect": APIGatewayWebSocketDisconnectEventModel,
    "rest": APIGatewayProxyEventModel,
    "wechat": APIGatewayProxyEventModel,  # the WeChat callback arrives through the REST API
    "dynamodb_stream": DynamoDBStreamModel,
}


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json")), ids=lambda p: p.name)
def test_sample_events_are_valid(path):
    prefix = next((p for p in MODELS if path.name.startswith(p)), None)
    if prefix is None:
        pytest.fail(f"{path.name}: name it after one of {sorted(MODELS)} so it can be checked")
    MODELS[prefix].model_validate(json.loads(path.read_text()))
