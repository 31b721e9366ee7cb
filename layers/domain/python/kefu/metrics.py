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


HOUR_FORMAT = "%Y-%m-%dT%H"  # the counters' hour keys, UTC
MAX_HOURS = 31 * 24


def hours_between(first: str, last: str) -> list[str]:
    """Every hour key from first to last, both included (UTC). ValueError on a malformed key, a reversed
    range or more than MAX_HOURS."""
    from datetime import datetime, timedelta

    start, end = datetime.strptime(first, HOUR_FORMAT), datetime.strptime(last, HOUR_FORMAT)
    if end < start:
        raise ValueError("the range ends before it starts")
    count = int((end - start).total_seconds() // 3600) + 1
    if count > MAX_HOURS:
        raise ValueError(f"at most {MAX_HOURS} hours ({MAX_HOURS // 24} days) at a time")
    return [(start + timedelta(hours=i)).strftime(HOUR_FORMAT) for i in range(count)]


def hourly_series(counters: dict[str, int], hours: list[str]) -> dict[str, list[int]]:
    """{"conversations.opened": [n per hour, ...], ...}: every counter seen, 0 where an hour has none."""
    index = {h: i for i, h in enumerate(hours)}
    series: dict[str, list[int]] = {}
    for key, value in counters.items():
        hour, _, name = key.partition("#")
        if hour in index and name:
            series.setdefault(name, [0] * len(hours))[index[hour]] += value
    return dict(sorted(series.items()))
