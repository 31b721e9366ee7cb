"""message and typing: store a message with the next seq, ack it, fan it out (the bot answers while it
has the conversation); rate: the customer's verdict on a bot answer; suggestion: the agent sends, edits
or rejects the answer the bot suggested.

Messages are rate limited per connection and per person (kefu.ratelimit): the limiter's one DynamoDB write
goes out on a thread as soon as the frame is valid and overlaps the conversation's read; only the writes of
the message wait for its verdict. Over the limit: an error frame `rate_limited` with the clientMessageId and
`retryAfter` (seconds), and nothing stored."""

import copy
import re
from concurrent.futures import ThreadPoolExecutor

from kefu import frames, wiring
from kefu.adapters.rate_counters import counters
from kefu.errors import RateLimited, TooLarge
from kefu.logs import logger
from kefu.ratelimit import GatedStore, RateLimiter
from kefu.websocket import route_handler

# Nothing valid this function takes comes near this: 4,000 characters of text, each escaped in JSON as a
# surrogate pair (12 bytes), 5 attachment references and the ids. Bigger frames are refused before they are
# parsed (the gateway closes the socket above schema.WS_MAX_FRAME_BYTES, 128 KB).
MAX_FRAME_BYTES = 64 * 1024

service = wiring.conversation_service()
limiter = RateLimiter(counters())
_limits = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ratelimit")  # one invocation at a time
_CMID = re.compile(r'"clientMessageId"\s*:\s*"([A-Za-z0-9_.:\-]{1,64})"')


def _message(who, connection_id, body):
    frame = frames.parse(body, frames.MessageFrame)
    if not any(limiter.limits.messages(who.role)):  # switched off (the local stack's default)
        return service.accept_message(who, connection_id, frame)
    verdict = _limits.submit(limiter.message, who, connection_id)
    gated = copy.copy(service)  # the same service (bot, router, caches...) whose store waits for the verdict
    gated.store = GatedStore(service.store, verdict.result, frame.clientMessageId)
    try:
        return gated.accept_message(who, connection_id, frame)
    except RateLimited as refused:
        logger.info("refused", extra={"code": refused.code, "scope": refused.scope, "retry_after": refused.retry_after})
        return {**frames.error(refused.code, refused.message, refused.client_message_id),
                "retryAfter": refused.retry_after}
    finally:
        verdict.result()  # counted within this invocation (a frozen container would hold the write up)


def _route(who, connection_id, body, route_key):
    if body is not None and len(body) > MAX_FRAME_BYTES // 4 and len(body.encode("utf-8")) > MAX_FRAME_BYTES:
        found = _CMID.search(body[:4096]) or _CMID.search(body)
        raise TooLarge(f"a frame is at most {MAX_FRAME_BYTES // 1024} KB here", details=[
            {"field": "frame", "problem": f"{len(body.encode('utf-8'))} bytes; at most {MAX_FRAME_BYTES}"}],
            client_message_id=found.group(1) if found else None)
    if route_key == "typing":
        return service.typing(who, connection_id, frames.parse(body, frames.TypingFrame))
    if route_key == "rate":
        return wiring.bot().rate(who, frames.parse(body, frames.RateFrame))
    if route_key == "suggestion":
        return wiring.bot().act_on_suggestion(who, frames.parse(body, frames.SuggestionFrame))
    return _message(who, connection_id, body)


handler = route_handler(_route)
