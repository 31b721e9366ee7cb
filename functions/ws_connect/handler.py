"""$connect: register the connection and attach it to the person's open conversations.

A person reconnecting in a loop, or one address opening connections for many visitors, is refused with
HTTP 429 (kefu.ratelimit) before anything is written; the log line says which limit, never the address. A
customer's connection is checked against an erasure once more after it is registered (kefu.privacy)."""

import json

from kefu import wiring
from kefu.adapters.rate_counters import counters
from kefu.identity import principal
from kefu.logs import logger
from kefu.privacy import token_revoked
from kefu.ratelimit import RateLimiter

service = wiring.conversation_service()
limiter = RateLimiter(counters())


@logger.inject_lambda_context(clear_state=True)  # no keys from the previous invocation
def handler(event, context):
    request = event["requestContext"]
    connection_id = request["connectionId"]
    who = principal(event)
    logger.append_keys(connection_id=connection_id, workspace=who.workspace, role=who.role)
    verdict = limiter.connect(who, (request.get("identity") or {}).get("sourceIp"))
    if not verdict.allowed:
        logger.info("connection refused", extra={"reason": "rate_limited", "scope": verdict.scope,
                                                 "retry_after": verdict.retry_after})
        return {"statusCode": 429, "headers": {"Retry-After": str(verdict.retry_after)},
                "body": json.dumps({"code": "rate_limited", "message": "too many connections; try again later",
                                    "retryAfter": verdict.retry_after})}
    service.connect(who, connection_id)
    if who.role == "customer" and token_revoked(who.issued_at, wiring.store().erased_at(who.workspace, who.id)):
        # erased between the authorizer's check and this registration: the erasure, which records itself before
        # it drops the customer's sockets, may have missed this one (read after writing: one of the two sees it)
        service.disconnect(who, connection_id)
        logger.info("connection refused", extra={"reason": "token_revoked"})
        return {"statusCode": 401, "body": json.dumps({"code": "unauthorized", "message": "token revoked"})}
    return {"statusCode": 200}
