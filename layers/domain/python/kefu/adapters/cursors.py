"""Opaque list cursors: a DynamoDB LastEvaluatedKey (attribute-value form), base64url-encoded. A cursor is
checked against the list it is used with (its index key must be the caller's), so another workspace's
or another list's cursor is refused instead of read."""

from __future__ import annotations

import base64
import binascii
import json

from ..errors import InvalidRequest


def encode(key: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode(cursor: str | None, expected: dict[str, str]) -> dict | None:
    """The key, in attribute-value form ({"pk": {"S": ...}}), if every `expected` attribute matches."""
    if not cursor:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        raise InvalidRequest("cursor: not a cursor this API returned") from None
    if not isinstance(key, dict) or not all(isinstance(v, dict) and len(v) == 1 and isinstance(v.get("S"), str)
                                            for v in key.values()):
        raise InvalidRequest("cursor: not a cursor this API returned")
    if any(key.get(name, {}).get("S") != value for name, value in expected.items()) or len(key) > 4:
        raise InvalidRequest("cursor: not a cursor of this list")
    return key
