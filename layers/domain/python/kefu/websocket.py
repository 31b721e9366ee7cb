"""Glue between API Gateway WebSocket events and the domain: identity, responses, error frames."""

from __future__ import annotations

import json
from typing import Callable

from aws_lambda_powertools import Logger

from . import frames
from .errors import KefuError, Unauthorized
from .models import Principal

logger = Logger(service="kefu")

Route = Callable[[Principal, str, str | None, str], dict]


def principal(event: dict) -> Principal:
    """Who owns this connection: the context our authorizer returned at $connect, which API Gateway
    attaches to every later event of the connection."""
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
        )
    except KeyError:
        raise Unauthorized("connection has no identity") from None


def authorizer_context(who: Principal) -> dict[str, str]:
    """The inverse of principal(): what the authorizer hands to API Gateway (string values only)."""
    context = {"workspace": who.workspace, "role": who.role, "userId": who.id, "name": who.name,
               "tags": ",".join(who.tags)}
    if who.agent_role:
        context["agentRole"] = who.agent_role
    return context


def reply(frame: dict) -> dict:
    """A route response: API Gateway sends the body back to the calling connection."""
    return {"statusCode": 200, "body": json.dumps(frame, ensure_ascii=False, separators=(",", ":"))}


def route_handler(route: Route) -> Callable[[dict, object], dict]:
    """Wraps a route function: identity in, a frame out, and an error frame for every refusal.

    Message text never reaches the logs (it may hold personal data); codes and ids do.
    """

    def handler(event: dict, context: object) -> dict:
        request = event.get("requestContext") or {}
        connection_id = request.get("connectionId", "")
        route_key = request.get("routeKey", "")
        logger.append_keys(route=route_key, connection_id=connection_id)
        request_id = frames.request_id(event.get("body"))
        try:
            who = principal(event)
            logger.append_keys(workspace=who.workspace, role=who.role)
            frame = route(who, connection_id, event.get("body"), route_key)
        except KefuError as error:
            logger.info("refused", extra={"code": error.code})
            frame = frames.error(error.code, error.message, error.client_message_id, error.details)
        except Exception:
            logger.exception("unhandled error")
            frame = frames.error("internal_error", "something went wrong on our side; please retry")
        if request_id:
            frame = {**frame, "requestId": request_id}
        return reply(frame)

    return handler
