"""Glue between API Gateway WebSocket events and the domain: identity, responses, error frames."""

from __future__ import annotations

import json
from typing import Callable

from . import frames
from .errors import KefuError
from .identity import principal
from .logs import logger
from .models import Principal

# A route returns its reply frame, or (reply, then): the reply goes to the caller at once (through
# @connections) and `then` runs after it, so work a frame sets in motion (the bot's answer, routing a
# new conversation) does not hold back its ack. No route response is sent in that case.
Route = Callable[[Principal, str, str | None, str], dict | tuple[dict, Callable[[], None] | None]]


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
        then = None
        try:
            who = principal(event)
            logger.append_keys(workspace=who.workspace, role=who.role)
            frame = route(who, connection_id, event.get("body"), route_key)
            if isinstance(frame, tuple):
                frame, then = frame
        except KefuError as error:
            logger.info("refused", extra={"code": error.code})
            frame = frames.error(error.code, error.message, error.client_message_id, error.details)
        except Exception:
            logger.exception("unhandled error")
            frame = frames.error("internal_error", "something went wrong on our side; please retry")
        if request_id:
            frame = {**frame, "requestId": request_id}
        if then is None:
            return reply(frame)
        from . import wiring  # only routes that defer work need the @connections client

        wiring.notifier().send(connection_id, frame)  # a gone caller is no reason to skip the rest
        try:
            then()
        except Exception:  # the caller has its ack; what failed is logged (and the bot hands over itself)
            logger.exception("work after the reply failed")
        return {"statusCode": 200}

    return logger.inject_lambda_context(clear_state=True)(handler)  # no keys from the previous invocation
