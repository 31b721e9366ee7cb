"""Plain Python values to and from DynamoDB attribute values, for the boto3-based adapters (tickets,
webhooks): numbers come back as int or float (not Decimal), tuples go in as lists, None is left out."""

from __future__ import annotations

from decimal import Decimal

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def plain(value):
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _dynamo(value):
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, (list, tuple)):
        return [_dynamo(v) for v in value]
    if isinstance(value, dict):
        return {k: _dynamo(v) for k, v in value.items() if v is not None}
    return value


def to_item(values: dict) -> dict:
    """Attribute values of an item (or of ExpressionAttributeValues); None values are left out."""
    return {k: _serializer.serialize(_dynamo(v)) for k, v in values.items() if v is not None}


def from_item(item: dict) -> dict:
    return {k: plain(_deserializer.deserialize(v)) for k, v in item.items()}
