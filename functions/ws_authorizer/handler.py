"""$connect authorizer: no valid token, no connection.

API Gateway attaches the returned context to every later event of the connection, so the
other handlers know who is speaking without reading the database.
"""

from kefu import tokens, wiring
from kefu.errors import Unauthorized
from kefu.identity import authorizer_context
from kefu.logs import logger
from kefu.privacy import token_revoked

store = wiring.store()


@logger.inject_lambda_context(clear_state=True)  # no keys from the previous invocation
def handler(event, context):
    token = (event.get("queryStringParameters") or {}).get("token")
    try:
        who = tokens.verify(wiring.signing_key(), token)
    except Unauthorized as error:
        logger.info("connection refused", extra={"reason": error.message})
        raise Exception("Unauthorized") from None  # API Gateway answers 401
    if who.role == "customer":
        # one read for both: the workspace, and the customer's erasure (kefu.privacy: their older tokens are refused)
        exists, erased_at = store.visitor_standing(who.workspace, who.id)
        if not exists:
            logger.info("connection refused", extra={"reason": "unknown workspace"})
            return _policy(f"{who.workspace}#customer#{who.id}", "Deny", event["methodArn"], {})
        if token_revoked(who.issued_at, erased_at):
            logger.info("connection refused", extra={"reason": "token revoked"})
            raise Exception("Unauthorized")  # 401, as for an expired token: the client needs a new one
    if who.role == "agent":
        agent = store.get_agent(who.workspace, who.id)
        if agent is None:
            logger.info("connection refused", extra={"reason": "unknown agent"})
            return _policy(f"{who.workspace}#agent#{who.id}", "Deny", event["methodArn"], {})
        who = type(who)(who.workspace, "agent", agent.id, agent.name or who.name, (), agent.role)
    return _policy(f"{who.workspace}#{who.role}#{who.id}", "Allow", event["methodArn"], authorizer_context(who))


def _policy(principal_id: str, effect: str, resource: str, context: dict) -> dict:
    return {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": context,
    }
