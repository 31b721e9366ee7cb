"""message and typing: store a message with the next seq, ack it, fan it out (the bot answers while it
has the conversation); rate: the customer's verdict on a bot answer; suggestion: the agent sends, edits
or rejects the answer the bot suggested."""

from kefu import frames, wiring
from kefu.websocket import route_handler

service = wiring.conversation_service()


def _route(who, connection_id, body, route_key):
    if route_key == "typing":
        return service.typing(who, connection_id, frames.parse(body, frames.TypingFrame))
    if route_key == "rate":
        return wiring.bot().rate(who, frames.parse(body, frames.RateFrame))
    if route_key == "suggestion":
        return wiring.bot().act_on_suggestion(who, frames.parse(body, frames.SuggestionFrame))
    return service.accept_message(who, connection_id, frames.parse(body, frames.MessageFrame))


handler = route_handler(_route)
