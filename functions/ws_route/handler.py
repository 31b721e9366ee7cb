"""route, cancel, close, offline_form, csat: a conversation's way to a human, out of the queue, to its end,
and the customer's rating of it."""

from kefu import frames, wiring
from kefu.websocket import route_handler

router = wiring.router()

ROUTES = {
    "route": lambda who, frame: router.route(who, frame),
    "cancel": lambda who, frame: router.cancel(who, frame),
    "close": lambda who, frame: router.close(who, frame),
    "offline_form": lambda who, frame: router.offline_form(who, frame),
    "csat": lambda who, frame: router.csat(who, frame),
}


def _route(who, connection_id, body, route_key):
    return ROUTES[route_key](who, frames.parse(body, frames.FRAMES[route_key]))


handler = route_handler(_route)
