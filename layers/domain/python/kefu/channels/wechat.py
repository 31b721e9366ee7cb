"""The WeChat Official Account (微信公众号) channel, plaintext mode (明文模式).

How WeChat talks to us:

* **URL verification** (once, when the server URL is configured in the WeChat console): a GET with
  ``signature``, ``timestamp``, ``nonce`` and ``echostr``; we answer ``echostr`` verbatim when the signature
  is valid (:func:`url_verification`).
* **Messages and events**: a POST with the same ``signature``/``timestamp``/``nonce`` (and ``openid``) in the
  query string and an XML body (:func:`verify_request`, :func:`parse_message`, :func:`to_inbound`).

The signature is ``sha1("".join(sorted([token, timestamp, nonce])))`` in hex, where ``token`` is the token
configured for the account. It signs neither the body nor the openid, so the timestamp is also checked
(:func:`check_timestamp`) to narrow replays, and messages are deduplicated downstream by ``external_id``.

**WeChat waits at most 5 seconds for the answer to the POST.** Without an answer in time it retries the
same message (same MsgId) up to three times and then shows the customer "该公众号暂时无法提供服务".
So the handler must answer fast: either a passive reply (:func:`passive_text_reply`, one message only,
only in the answer to that very POST) or :data:`PASSIVE_EMPTY` (``"success"``) and reply asynchronously
through the customer-service message API (:class:`CustomerServiceApi`), which works within 48 hours of
the customer's last message and allows a limited number of messages per customer interaction.

Safe mode (encrypted bodies, ``encrypt_type=aes``) is not supported: such bodies are refused with
``InvalidRequest``.

Neither the app secret nor access tokens are ever logged or put into exceptions; customer text never
goes into exception messages either.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from xml.etree.ElementTree import ParseError

import requests
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as _safe_fromstring

from kefu.channels import Inbound
from kefu.errors import InvalidRequest, Unauthorized

log = logging.getLogger(__name__)

CHANNEL = "wechat"
DEFAULT_BASE_URL = "https://api.weixin.qq.com"
MAX_BODY_BYTES = 64 * 1024
TEXT_LIMIT_BYTES = 2048  # a text message's content, UTF-8 encoded
MAX_SKEW_S = 300
PASSIVE_EMPTY = "success"  # answer to the POST when the reply goes out asynchronously

# message types to_inbound turns into a customer message; voice only when WeChat recognized the speech
SUPPORTED_TYPES = ("text", "image")
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})  # access token invalid / not a token / expired
RETRYABLE_ERRCODES = frozenset({-1, 45009, 45011})  # system busy, API quota per day / per minute

_MAX_PARAM_LEN = 256  # signature, timestamp and nonce are short; refuse anything absurd before hashing


# --- signature and replay -------------------------------------------------------------------------------


def _signature(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode("utf-8")).hexdigest()


def verify_signature(token: str, signature: str, timestamp: str, nonce: str) -> bool:
    """True when ``signature`` is WeChat's signature of (token, timestamp, nonce); constant-time compare."""
    values = (token, signature, timestamp, nonce)
    if not all(isinstance(v, str) for v in values) or not token or not signature:
        return False
    if any(len(v) > _MAX_PARAM_LEN for v in (signature, timestamp, nonce)):
        return False
    expected = _signature(token, timestamp, nonce)
    return hmac.compare_digest(expected.encode("ascii"), signature.strip().lower().encode("utf-8"))


def check_timestamp(timestamp: str | int, now: float, max_skew_s: float = MAX_SKEW_S) -> bool:
    """True when ``timestamp`` (epoch seconds, as WeChat sends it) is within ``max_skew_s`` of ``now``."""
    if isinstance(timestamp, bool):
        return False
    if isinstance(timestamp, str):
        if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
            return False
        timestamp = int(timestamp)
    if not isinstance(timestamp, int):
        return False
    return abs(now - timestamp) <= max_skew_s


def verify_request(token: str, query: Mapping[str, str] | None, *, now: float | None = None,
                   max_skew_s: float = MAX_SKEW_S) -> None:
    """Checks the signature and timestamp in a callback's query string; raises ``Unauthorized`` if either fails.

    ``now`` defaults to the current time."""
    query = query or {}
    signature, timestamp, nonce = (query.get(k) for k in ("signature", "timestamp", "nonce"))
    if not verify_signature(token, signature, timestamp, nonce):  # type: ignore[arg-type]
        raise Unauthorized("invalid WeChat signature")
    if not check_timestamp(timestamp, time.time() if now is None else now, max_skew_s):  # type: ignore[arg-type]
        raise Unauthorized("WeChat timestamp too far from now (replay?)")


def url_verification(token: str, query: Mapping[str, str] | None, *, now: float | None = None,
                     max_skew_s: float = MAX_SKEW_S) -> str:
    """The GET callback WeChat sends when the server URL is configured: returns ``echostr`` (to be answered
    as text/plain, verbatim) when the signature is valid; raises ``Unauthorized`` otherwise."""
    verify_request(token, query, now=now, max_skew_s=max_skew_s)
    echostr = (query or {}).get("echostr")
    if not isinstance(echostr, str) or not echostr:
        raise Unauthorized("WeChat URL verification without echostr")
    return echostr


# --- inbound XML ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WeChatMessage:
    """One message or event POSTed by WeChat. Absent fields are ""."""

    to_user: str  # the official account's id (gh_...)
    from_user: str  # the customer's openid
    create_time: int
    msg_type: str  # text | image | voice | video | shortvideo | location | link | event | ... (lower case)
    content: str = ""  # text
    msg_id: str = ""  # absent on events
    event: str = ""  # subscribe | unsubscribe | CLICK | VIEW | SCAN | LOCATION | ... (as WeChat spells it)
    event_key: str = ""
    media_id: str = ""  # image, voice, video, shortvideo
    pic_url: str = ""  # image
    format: str = ""  # voice: amr | speex
    recognition: str = ""  # voice: the recognized speech, when recognition is enabled for the account
    thumb_media_id: str = ""  # video, shortvideo
    title: str = ""  # link
    description: str = ""  # link
    url: str = ""  # link
    location_x: str = ""  # location: latitude
    location_y: str = ""  # location: longitude
    scale: str = ""  # location
    label: str = ""  # location
    supported: bool = True  # False: a customer message kefu does not handle (to_inbound gives "unsupported")
    fields: dict = field(default_factory=dict, repr=False, compare=False)  # every simple child element

    @property
    def is_event(self) -> bool:
        return self.msg_type == "event"


_FIELDS = {
    "content": "Content", "msg_id": "MsgId", "event": "Event", "event_key": "EventKey", "media_id": "MediaId",
    "pic_url": "PicUrl", "format": "Format", "recognition": "Recognition", "thumb_media_id": "ThumbMediaId",
    "title": "Title", "description": "Description", "url": "Url", "location_x": "Location_X",
    "location_y": "Location_Y", "scale": "Scale", "label": "Label",
}


def parse_message(body: bytes | str) -> WeChatMessage:
    """Parses the XML body of a WeChat POST (external entities and DTDs are refused).

    Raises ``InvalidRequest`` for an empty or oversized body (> 64 KB), malformed XML, an encrypted
    (safe mode) body, a missing FromUserName or MsgType, or a non-numeric CreateTime."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    if not isinstance(body, (bytes, bytearray)):
        raise InvalidRequest("WeChat message body must be bytes")
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequest(f"WeChat message body too large: {len(body)} bytes (limit {MAX_BODY_BYTES})")
    if not body.strip():
        raise InvalidRequest("empty WeChat message body")
    try:
        root = _safe_fromstring(bytes(body), forbid_dtd=True)
    except DefusedXmlException:
        raise InvalidRequest("WeChat message XML with a DTD or entities is refused") from None
    except ParseError as e:
        line, column = getattr(e, "position", (0, 0))
        raise InvalidRequest(f"malformed WeChat message XML (line {line}, column {column})") from None
    if root.tag != "xml":
        raise InvalidRequest("WeChat message XML must have an <xml> root element")

    values: dict[str, str] = {}
    for child in root:
        if isinstance(child.tag, str) and len(child) == 0 and child.tag not in values:
            values[child.tag] = child.text or ""

    def get(name: str) -> str:
        return values.get(name, "").strip()

    if "MsgType" not in values and "Encrypt" in values:
        raise InvalidRequest("encrypted WeChat messages (safe mode) are not supported: use plaintext mode")
    from_user, msg_type = get("FromUserName"), get("MsgType").lower()
    if not from_user:
        raise InvalidRequest("WeChat message without FromUserName")
    if not msg_type:
        raise InvalidRequest("WeChat message without MsgType")
    create_time_s = get("CreateTime") or "0"
    if not create_time_s.isascii() or not create_time_s.isdigit() or len(create_time_s) > 12:
        raise InvalidRequest("WeChat message with a non-numeric CreateTime")

    kwargs = {name: get(tag) for name, tag in _FIELDS.items()}
    kwargs["content"] = values.get("Content", "")  # the customer's text exactly as sent
    supported = (msg_type in SUPPORTED_TYPES or msg_type == "event"
                 or (msg_type == "voice" and bool(kwargs["recognition"])))
    return WeChatMessage(to_user=get("ToUserName"), from_user=from_user, create_time=int(create_time_s),
                         msg_type=msg_type, supported=supported, fields=values, **kwargs)


def to_inbound(message: WeChatMessage, workspace: str) -> Inbound | None:
    """The customer message in kefu's envelope; None for events (subscribe, unsubscribe, CLICK, ...),
    which are not customer messages."""
    if message.is_event:
        return None
    openid = message.from_user
    common = {
        "workspace": workspace,
        "channel": CHANNEL,
        "customer_id": f"wx:{openid}",
        "external_id": message.msg_id or f"{openid}:{message.create_time}",
        "address": openid,
    }
    if message.msg_type == "text":
        return Inbound(text=message.content, kind="text", **common)
    if message.msg_type == "image":
        text = f"[图片] {message.pic_url}" if message.pic_url else "[图片]"
        return Inbound(text=text, kind="image", extra={"picUrl": message.pic_url, "mediaId": message.media_id},
                       **common)
    if message.msg_type == "voice" and message.recognition:
        return Inbound(text=message.recognition, kind="text",
                       extra={"msgType": "voice", "mediaId": message.media_id, "format": message.format}, **common)
    extra = {"msgType": message.msg_type}
    for key, value in (("mediaId", message.media_id), ("thumbMediaId", message.thumb_media_id),
                       ("url", message.url), ("title", message.title), ("locationX", message.location_x),
                       ("locationY", message.location_y), ("label", message.label)):
        if value:
            extra[key] = value
    return Inbound(text=f"[暂不支持的消息类型: {message.msg_type}]", kind="unsupported", extra=extra, **common)


# --- outbound: passive reply ------------------------------------------------------------------------------

# characters XML 1.0 cannot carry at all, not even in CDATA
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _cdata(value: str) -> str:
    value = _XML_INVALID.sub("", value)
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def passive_text_reply(to_user: str, from_user: str, text: str, now: float) -> str:
    """The XML answering a POST with one text message: ``to_user`` is the customer's openid, ``from_user``
    the official account's id (the inbound message's ToUserName). Must be sent within WeChat's 5 s.

    Raises ``ValueError`` when ``text`` is over 2048 bytes: a passive reply is a single message, so send
    long answers through :class:`CustomerServiceApi` (which splits them) and answer ``PASSIVE_EMPTY``."""
    if len(text.encode("utf-8")) > TEXT_LIMIT_BYTES:
        raise ValueError(f"passive reply text over {TEXT_LIMIT_BYTES} bytes; use the customer-service API")
    return (
        "<xml>"
        f"<ToUserName>{_cdata(to_user)}</ToUserName>"
        f"<FromUserName>{_cdata(from_user)}</FromUserName>"
        f"<CreateTime>{int(now)}</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{_cdata(text)}</Content>"
        "</xml>"
    )


def split_text(text: str, limit_bytes: int = TEXT_LIMIT_BYTES) -> list[str]:
    """Splits ``text`` into parts of at most ``limit_bytes`` UTF-8 bytes, on character boundaries, preferring
    to cut after a line break in the second half of a part. ``"".join(parts) == text``."""
    if limit_bytes < 4:
        raise ValueError("limit_bytes must leave room for any character (>= 4)")
    parts: list[str] = []
    start, size, last_break = 0, 0, -1
    i = 0
    while i < len(text):
        n = len(text[i].encode("utf-8", "surrogatepass"))
        if size + n > limit_bytes:
            cut = last_break + 1 if last_break >= 0 and last_break - start >= (i - start) // 2 else i
            parts.append(text[start:cut])
            start, last_break = cut, -1
            size = len(text[start:i].encode("utf-8", "surrogatepass"))
            continue
        size += n
        if text[i] == "\n":
            last_break = i
        i += 1
    if start < len(text) or not parts:
        parts.append(text[start:])
    return parts


# --- outbound: customer-service message API ---------------------------------------------------------------


class ChannelError(Exception):
    """Sending through a channel failed. ``code`` is stable: ``"errcode:<n>"`` for a WeChat error code,
    ``"http:<status>"``, ``"timeout"``, ``"network"`` or ``"bad_response"``. ``retryable``: the same call
    may succeed later. ``parts_sent``: how many parts of a split text were delivered before the failure.

    A timeout on a send is retryable but the message may have been delivered anyway."""

    def __init__(self, code: str, message: str, retryable: bool, *, errcode: int | None = None,
                 parts_sent: int = 0):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.errcode = errcode
        self.parts_sent = parts_sent


class CustomerServiceApi:
    """WeChat's customer-service message API (客服消息): replies sent outside the 5 s passive window.

    The access token is fetched with the app id and secret, cached until shortly before it expires
    (shared by threads, one fetch at a time), and refreshed once when WeChat says it is invalid or expired.
    """

    def __init__(self, app_id: str, app_secret: str, *, base_url: str = DEFAULT_BASE_URL,
                 session: requests.Session | None = None, timeout_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, refresh_margin_s: float = 300.0):
        if not app_id or not app_secret:
            raise ValueError("app_id and app_secret are required")
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self._app_secret = app_secret
        self._session = session or requests.Session()
        self.timeout_s = timeout_s
        self._clock = clock
        self._refresh_margin_s = refresh_margin_s
        self._lock = threading.Lock()
        self._token: str | None = None
        self._token_expires_at = 0.0

    def __repr__(self) -> str:
        return f"CustomerServiceApi(app_id={self.app_id!r}, base_url={self.base_url!r})"

    # -- access token

    def access_token(self) -> str:
        """A valid access token, from the cache or freshly fetched."""
        token = self._cached()
        if token:
            return token
        with self._lock:
            token = self._cached()  # another thread may have fetched it while we waited
            if token:
                return token
            return self._fetch_token()

    def invalidate_token(self, token: str | None = None) -> None:
        """Forgets the cached token (only if it is still ``token``, when given)."""
        with self._lock:
            if token is None or token == self._token:
                self._token, self._token_expires_at = None, 0.0

    def _cached(self) -> str | None:
        token = self._token
        if token and self._clock() < self._token_expires_at:
            return token
        return None

    def _fetch_token(self) -> str:
        params = {"grant_type": "client_credential", "appid": self.app_id, "secret": self._app_secret}
        data = self._call("GET", "/cgi-bin/token", params=params)
        token, expires_in = data.get("access_token"), data.get("expires_in")
        if not isinstance(token, str) or not token or isinstance(expires_in, bool) \
                or not isinstance(expires_in, (int, float)) or expires_in <= 0:
            raise ChannelError("bad_response", "WeChat token response without access_token/expires_in", True)
        margin = min(self._refresh_margin_s, expires_in / 2)
        self._token, self._token_expires_at = token, self._clock() + expires_in - margin
        log.info("wechat access token fetched", extra={"appId": self.app_id, "expiresIn": expires_in})
        return token

    # -- sending

    def send_text(self, openid: str, text: str) -> int:
        """Sends ``text`` to the customer ``openid``, split into several messages when over 2048 bytes.
        Returns the number of messages sent; raises ``ChannelError``."""
        if not isinstance(openid, str) or not openid.strip():
            raise ValueError("openid is required")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must not be empty")
        text = _LONE_SURROGATE.sub("\ufffd", text)  # not encodable in UTF-8
        parts = [p for p in split_text(text) if p.strip()]  # WeChat refuses blank messages
        for sent, part in enumerate(parts):
            payload = {"touser": openid, "msgtype": "text", "text": {"content": part}}
            try:
                self._send(payload)
            except ChannelError as e:
                e.parts_sent = sent
                raise
        return len(parts)

    def _send(self, payload: dict) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        for attempt in (1, 2):
            token = self.access_token()
            try:
                self._call("POST", "/cgi-bin/message/custom/send", params={"access_token": token}, body=body)
                return
            except ChannelError as e:
                if e.errcode in TOKEN_ERRCODES and attempt == 1:
                    log.warning("wechat access token refused (errcode %s); refreshing once", e.errcode)
                    self.invalidate_token(token)
                    continue
                raise

    def _call(self, method: str, path: str, *, params: dict, body: bytes | None = None) -> dict:
        """One API call; returns the JSON answer or raises ChannelError (never with the URL, which holds
        the secret or the token, and never chained to the requests exception, whose text holds the URL)."""
        headers = {"Content-Type": "application/json; charset=utf-8"} if body is not None else None
        error: ChannelError | None = None
        try:
            response = self._session.request(method, self.base_url + path, params=params, data=body,
                                             headers=headers, timeout=self.timeout_s)
        except requests.Timeout:
            error = ChannelError("timeout", f"WeChat API {path} timed out after {self.timeout_s}s", True)
        except requests.RequestException as e:
            error = ChannelError("network", f"WeChat API {path} unreachable ({type(e).__name__})", True)
        if error is not None:
            raise error
        status = response.status_code
        if status >= 400:
            retryable = status >= 500 or status in (408, 429)
            raise ChannelError(f"http:{status}", f"WeChat API {path} answered HTTP {status}", retryable)
        try:
            data = json.loads(response.content.decode("utf-8"))
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ChannelError("bad_response", f"WeChat API {path} answered something other than JSON", True)
        errcode = data.get("errcode", 0)
        if errcode not in (0, None):
            errcode = errcode if isinstance(errcode, int) and not isinstance(errcode, bool) else -999
            errmsg = self._scrub(str(data.get("errmsg", "")))[:200]
            raise ChannelError(f"errcode:{errcode}", f"WeChat API {path} error {errcode}: {errmsg}",
                               errcode in RETRYABLE_ERRCODES, errcode=errcode)
        return data

    def _scrub(self, text: str) -> str:
        for secret in (self._app_secret, self._token):
            if secret:
                text = text.replace(secret, "***")
        return text


# --- keep secrets out of urllib3's DEBUG logs, which print request URLs with their query strings -----------

_SECRET_PARAMS = re.compile(r"((?:secret|access_token)=)[^&\s\"']+")


class _RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is the logging module's business
            return True
        if "secret=" in message or "access_token=" in message:
            record.msg, record.args = _SECRET_PARAMS.sub(r"\1***", message), None
        return True


def _install_redaction() -> None:
    for name in ("urllib3.connectionpool", "requests"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactSecrets) for f in logger.filters):
            logger.addFilter(_RedactSecrets())


_install_redaction()
