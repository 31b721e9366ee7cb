"""Typed reading of the app's ``kefu:*`` context values (``-c key=value`` or cdk.json)."""

from __future__ import annotations

from constructs import Construct


def context_int(scope: Construct, key: str, default: int, *, minimum: int, maximum: int) -> int:
    """An integer context value (``-c key=value`` arrives as a string; cdk.json may hold a number)."""
    raw = scope.node.try_get_context(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"context {key} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ValueError(f"context {key} must be between {minimum} and {maximum}, got {value}")
    return value
