"""Who is on a connection: the authorizer's context, which API Gateway attaches to every event."""

from __future__ import annotations

from .errors import Unauthorized
from .models import Principal


def principal(event: dict) -> Principal:
    """The caller of a WebSocket event: the context our authorizer returned at $connect."""
    context = (event.get("requestContext") or {}).get("authorizer") or {}
    try:
        tags = tuple(t for t in str(context.get("tags") or "").split(",") if t)
        return Principal(
            workspace=context["workspace"],
            role=context["role"],
            id=context["userId"],
            name=context.get("name") or "",
            tags=tags,
            agent_role=context.get("agentRole") or None,
            issued_at=int(context["issuedAt"]) if str(context.get("issuedAt") or "").isdigit() else None,
        )
    except KeyError:
        raise Unauthorized("connection has no identity") from None


def authorizer_context(who: Principal) -> dict[str, str]:
    """The inverse of principal(): what the authorizer hands to API Gateway (string values only)."""
    context = {"workspace": who.workspace, "role": who.role, "userId": who.id, "name": who.name,
               "tags": ",".join(who.tags)}
    if who.agent_role:
        context["agentRole"] = who.agent_role
    if who.issued_at is not None:  # the token's iat: $connect checks it against an erasure once more (kefu.privacy)
        context["issuedAt"] = str(who.issued_at)
    return context
