"""Hourly counters derived from conversation items (pure: the stream handler feeds it images)."""

from __future__ import annotations

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
        yield workspace, f"{hour}#messages.{image.get('senderRole', 'unknown')}"
    elif kind == "meta":
        hour = str(image.get("openedAt", ""))[:13]
        yield workspace, f"{hour}#conversations.opened"
