"""sync: the messages after the client's last seen seq, in order."""

from kefu import frames, wiring
from kefu.websocket import route_handler

service = wiring.conversation_service()

handler = route_handler(lambda who, _cid, body, _key: service.sync(who, frames.parse(body, frames.SyncFrame)))
