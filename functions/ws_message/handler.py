"""message and typing: store a message with the next seq, ack it, fan it out."""

from kefu import frames, wiring
from kefu.websocket import route_handler

service = wiring.conversation_service()


def _route(who, connection_id, body, route_key):
    if route_key == "typing":
        return service.typing(who, connection_id, frames.parse(body, frames.TypingFrame))
    return service.send_message(who, connection_id, frames.parse(body, frames.MessageFrame))


handler = route_handler(_route)
