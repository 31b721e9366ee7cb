"""$disconnect: forget the connection (best effort: API Gateway may never deliver this event)."""

from kefu import wiring
from kefu.identity import principal
from kefu.logs import logger

service = wiring.conversation_service()


@logger.inject_lambda_context(clear_state=True)  # no keys from the previous invocation
def handler(event, context):
    connection_id = event["requestContext"]["connectionId"]
    who = principal(event)
    logger.append_keys(connection_id=connection_id, workspace=who.workspace, role=who.role)
    service.disconnect(who, connection_id)
    return {"statusCode": 200}
