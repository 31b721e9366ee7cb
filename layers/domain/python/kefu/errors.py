"""Domain errors. Each carries a stable machine-readable code that clients see in error frames."""

from __future__ import annotations


class KefuError(Exception):
    code = "error"

    def __init__(self, message: str, *, client_message_id: str | None = None, details: object = None):
        super().__init__(message)
        self.message = message
        self.client_message_id = client_message_id
        self.details = details


class InvalidFrame(KefuError):
    code = "invalid_frame"


class InvalidRequest(KefuError):
    """REST: the request is well-formed JSON but its content is refused (HTTP 422)."""

    code = "invalid_request"


class MalformedJson(KefuError):
    code = "malformed_json"


class UnknownAction(KefuError):
    code = "unknown_action"


class NotFound(KefuError):
    """Also what another workspace's or another customer's ids look like: we never confirm they exist."""

    code = "not_found"


class Forbidden(KefuError):
    code = "forbidden"


class ConversationClosed(KefuError):
    code = "conversation_closed"


class NoAgentAvailable(KefuError):
    code = "no_agent_available"


class Conflict(KefuError):
    code = "conflict"


class Busy(KefuError):
    """Retryable: too many writers at once. Resending with the same clientMessageId is safe."""

    code = "busy"


class Unauthorized(KefuError):
    code = "unauthorized"


class RateLimited(KefuError):
    """Retryable: over a rate limit. Nothing was stored; resend with the same clientMessageId after
    `retry_after` seconds."""

    code = "rate_limited"

    def __init__(self, message: str, *, client_message_id: str | None = None, retry_after: int = 1,
                 scope: str | None = None):
        super().__init__(message, client_message_id=client_message_id)
        self.retry_after = retry_after
        self.scope = scope  # which limit refused: connection, person or source (for logs and metrics)


class TooLarge(KefuError):
    """The frame or body is bigger than anything valid could be (refused before it is parsed)."""

    code = "too_large"
