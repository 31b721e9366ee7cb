"""route: the customer asks for a human; assign the conversation to an available agent."""

from kefu import frames, wiring
from kefu.websocket import route_handler

service = wiring.conversation_service()

handler = route_handler(
    lambda who, _cid, body, _key: service.route(who, frames.parse(body, frames.RouteFrame).conversationId)
)
