"""Channels: every way a customer reaches kefu (the web widget over WebSocket, app backends over REST,
WeChat Official Accounts, ...) delivers the same envelope into the same conversations. A customer with
the same workspace customer id continues one conversation and one history across channels; each
message records the channel it came through."""

from __future__ import annotations

from dataclasses import dataclass, field

CHANNELS: tuple[str, ...] = ("web", "rest", "wechat")


@dataclass(frozen=True)
class Inbound:
    """One customer message from any channel, after the channel adapter has verified and parsed it."""

    workspace: str
    channel: str  # one of CHANNELS
    customer_id: str  # the workspace's customer id (an app's user id, "wx:{openid}" for WeChat, ...)
    text: str
    external_id: str  # the channel's id of this message: a resend with the same id is the same message
    customer_name: str = ""
    address: str | None = None  # where replies go on that channel (a WeChat openid); None: nowhere
    kind: str = "text"  # text | image | file | unsupported (the adapter puts a readable note in text)
    extra: dict = field(default_factory=dict)  # channel details worth keeping (media ids, urls)
