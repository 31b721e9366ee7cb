"""$default: frames that are not JSON or name no known action get an error frame, never silence."""

from kefu import frames
from kefu.errors import UnknownAction
from kefu.websocket import route_handler


def _route(who, connection_id, body, route_key):
    frame = frames.parse(body)  # raises MalformedJson, UnknownAction or InvalidFrame
    raise UnknownAction(f"action {frame.action!r} is not served here")


handler = route_handler(_route)
