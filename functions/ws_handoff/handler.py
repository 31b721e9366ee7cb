"""handoff: an agent transfers a conversation to another agent or a group; assign: a supervisor's hand."""

from kefu import frames, wiring
from kefu.websocket import route_handler

router = wiring.router()


def _route(who, connection_id, body, route_key):
    if route_key == "assign":
        return router.assign_by_hand(who, frames.parse(body, frames.AssignFrame))
    return router.handoff(who, frames.parse(body, frames.HandoffFrame))


handler = route_handler(_route)
