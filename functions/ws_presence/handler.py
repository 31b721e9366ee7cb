"""presence: an agent goes online, away or offline; snapshot: the live queue and agents, for supervisors."""

from kefu import frames, wiring
from kefu.websocket import route_handler

router = wiring.router()


def _route(who, connection_id, body, route_key):
    if route_key == "snapshot":
        frames.parse(body, frames.SnapshotFrame)
        return router.snapshot(who)
    return router.presence(who, frames.parse(body, frames.PresenceFrame))


handler = route_handler(_route)
