"""The one structured logger (Powertools). Kept apart from the protocol module so that functions
that parse no frames (authorizer, stream consumers) do not import pydantic at cold start.

Personal data never reaches a log line: the logger's JSON serializer masks (kefu.pii) every string
of the finished record just before it is written — the message (after %-formatting, dict messages
too), `extra={...}` values, appended keys, the formatted exception and the serialized stack trace.
Masking there, rather than in a logging.Filter, also covers what Powertools formats itself from
`exc_info` and keys added with `append_keys`, which a filter never sees. Records from stdlib child
loggers (`logging.getLogger("kefu.router")`) propagate to the same handler and are masked alike.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger

from . import pii

_MAX_DEPTH = 32
# keys Powertools fills in itself: ids and timestamps whose digit runs must stay intact
_TRUSTED_KEYS = frozenset({"timestamp", "level", "service", "sampling_rate", "xray_trace_id", "cold_start",
                           "function_name", "function_memory_size", "function_arn", "function_request_id"})


def _masked(value: Any, depth: int = 0) -> Any:
    """The value with every string masked; what json would stringify (default=str) is stringified
    and masked here. Never raises."""
    try:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return pii.mask(value)
        if isinstance(value, (int, float)):  # a bare 13812345678 is a phone number too
            text = str(value)
            masked = pii.mask(text)
            return value if masked == text else masked
        if depth >= _MAX_DEPTH:
            return pii.mask(str(value))
        if isinstance(value, dict):
            return {_masked_key(k): _masked(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [_masked(v, depth + 1) for v in value]
        return pii.mask(str(value))
    except Exception:  # noqa: BLE001 - an unprintable value must not break (or leak through) logging
        return "[unprintable]"


def _masked_key(key: Any) -> Any:
    if isinstance(key, str):
        return pii.mask(key)
    if key is None or isinstance(key, (bool, int, float)):
        return key
    return pii.mask(str(key))


def masked_json(log: dict) -> str:
    """Powertools json_serializer: the log record as one JSON line, personal data masked."""
    try:
        masked = {
            _masked_key(k): (v if k in _TRUSTED_KEYS and isinstance(v, (str, int, float, bool)) else _masked(v, 1))
            for k, v in log.items()
        }
        return json.dumps(masked, default=str, separators=(",", ":"), ensure_ascii=False)
    except Exception:  # noqa: BLE001 - never hand logging.handleError a record to print raw
        return json.dumps({"level": "ERROR", "message": "log record could not be serialized safely"})


def _install(target: Logger) -> None:
    """Make sure the handler's formatter masks, also when the stdlib logger was configured before
    (Powertools then ignores the constructor's json_serializer)."""
    for handler in target.handlers:
        formatter = handler.formatter
        if formatter is not None and hasattr(formatter, "json_serializer"):
            formatter.json_serializer = masked_json


logger = Logger(service="kefu", json_serializer=masked_json)
_install(logger)
