"""sync: the messages after the client's last seen seq, in order; inbox: the caller's open conversations."""

from kefu import frames, wiring
from kefu.websocket import route_handler

service = wiring.conversation_service()


def _route(who, connection_id, body, route_key):
    if route_key == "inbox":
        frames.parse(body, frames.InboxFrame)
        return service.inbox(who)
    return service.sync(who, frames.parse(body, frames.SyncFrame))


handler = route_handler(_route)
