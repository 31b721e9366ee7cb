"""Hourly counters derived from conversation items (pure: the stream handler feeds it images)."""

from __future__ import annotations

import json
from typing import Iterator

METRIC_RETENTION_S = 400 * 24 * 3600


def counters_for(image: dict) -> Iterator[tuple[str, str]]:
    """(workspace, "{hour}#{counter}") for each counter a newly inserted item adds one to."""
    pk, kind = str(image.get("pk", "")), image.get("kind")
    workspace = pk.split("#", 1)[0]
    if not workspace:
        return
    if kind == "msg":
        hour = str(image.get("createdAt", ""))[:13]  # 2026-11-21T15
        role = image.get("senderRole", "unknown")
        yield workspace, f"{hour}#messages.{role}"
        if role == "bot":  # the bot's decisions: answered, sent for review, handed over
            decision = _meta(image).get("decision")
            if decision in ("answer", "review", "handoff"):
                yield workspace, f"{hour}#bot.{decision}"
    elif kind == "meta":
        hour = str(image.get("openedAt", ""))[:13]
        yield workspace, f"{hour}#conversations.opened"


def _meta(image: dict) -> dict:
    """A message's meta: a JSON string in the stream image (PynamoDB's JSONAttribute)."""
    meta = image.get("meta")
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            return {}
    return meta if isinstance(meta, dict) else {}
