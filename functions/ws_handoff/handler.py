"""handoff: an agent transfers a conversation to another agent or a group."""

from kefu import frames, wiring
from kefu.websocket import route_handler

service = wiring.conversation_service()

handler = route_handler(lambda who, _cid, body, _key: service.handoff(who, frames.parse(body, frames.HandoffFrame)))
