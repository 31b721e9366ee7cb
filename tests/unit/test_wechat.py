"""The WeChat Official Account channel: signatures, XML parsing, the Inbound mapping, passive replies and the
customer-service API (against a fake of WeChat's HTTP API on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventModel
from defusedxml.ElementTree import fromstring
from kefu.channels import Inbound, wechat
from kefu.channels.wechat import ChannelError, CustomerServiceApi, WeChatMessage
from kefu.errors import InvalidRequest, Unauthorized

EVENTS = Path(__file__).resolve().parents[2] / "events"
TOKEN = "kefu-test-token"
OPENID = "oKefuTest_5Xq9cZr3bN2mWfA7dE"
GH = "gh_3a9f1c2b7d4e"
APP_ID = "wx0123456789abcdef"
APP_SECRET = "app-secret-0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def load(name: str) -> dict:
    return json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))


def sign(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def xml(msg_type: str, inner: str = "", *, create_time: str = "1795273709", msg_id: str | None = "1001") -> bytes:
    mid = f"<MsgId>{msg_id}</MsgId>" if msg_id is not None else ""
    return (f"<xml><ToUserName><![CDATA[{GH}]]></ToUserName><FromUserName><![CDATA[{OPENID}]]></FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{inner}{mid}</xml>"
            ).encode()


# --- signature and replay --------------------------------------------------------------------------------


def test_signature_valid_and_tampered():
    good = sign(TOKEN, "1795273709", "42")
    assert wechat.verify_signature(TOKEN, good, "1795273709", "42")
    assert wechat.verify_signature(TOKEN, good.upper(), "1795273709", "42")
    assert not wechat.verify_signature("other-token", good, "1795273709", "42")
    assert not wechat.verify_signature(TOKEN, good, "1795273710", "42")
    assert not wechat.verify_signature(TOKEN, good, "1795273709", "43")
    assert not wechat.verify_signature(TOKEN, good[:-1] + ("0" if good[-1] != "0" else "1"), "1795273709", "42")


def test_signature_sorts_the_three_values():
    # lexicographic sort, not numeric: "10" < "9" < "kefu-test-token"
    expected = hashlib.sha1(b"109kefu-test-token").hexdigest()
    assert wechat.verify_signature(TOKEN, expected, "9", "10")


@pytest.mark.parametrize("args", [
    ("", "x", "1", "2"), (TOKEN, "", "1", "2"), (TOKEN, None, "1", "2"), (TOKEN, "x", None, "2"),
    (TOKEN, "x", "1", None), (TOKEN, "x" * 1000, "1", "2"), (TOKEN, 123, "1", "2"),
])
def test_signature_garbage_is_false(args):
    assert wechat.verify_signature(*args) is False


def test_empty_token_never_verifies():
    assert not wechat.verify_signature("", sign("", "1", "2"), "1", "2")


@pytest.mark.parametrize("ts, ok", [
    ("1000", True), ("1300", True), ("700", True), ("1301", False), ("699", False), (1000, True),
    ("", False), ("abc", False), ("-5", False), ("1e3", False), ("١٠٠٠", False), (None, False), (True, False),
    ("9" * 40, False),
])
def test_check_timestamp(ts, ok):
    assert wechat.check_timestamp(ts, 1000.0) is ok


def test_check_timestamp_custom_skew():
    assert wechat.check_timestamp("1000", 1030.0, max_skew_s=30)
    assert not wechat.check_timestamp("1000", 1031.0, max_skew_s=30)


def test_verify_request_reasons():
    q = {"signature": sign(TOKEN, "1000", "n"), "timestamp": "1000", "nonce": "n"}
    wechat.verify_request(TOKEN, q, now=1010)
    with pytest.raises(Unauthorized, match="signature"):
        wechat.verify_request("wrong", q, now=1010)
    with pytest.raises(Unauthorized, match="timestamp"):
        wechat.verify_request(TOKEN, q, now=5000)
    with pytest.raises(Unauthorized):
        wechat.verify_request(TOKEN, None, now=1010)
    with pytest.raises(Unauthorized):  # default now is the real clock: a 1970 timestamp is a replay
        wechat.verify_request(TOKEN, q)


# --- url verification --------------------------------------------------------------------------------------


def test_url_verification_sample_event():
    event = load("wechat_url_verification")
    assert event["httpMethod"] == "GET"
    q = event["queryStringParameters"]
    now = int(q["timestamp"]) + 2
    assert wechat.url_verification(TOKEN, q, now=now) == "6180127734091864532"


def test_url_verification_refusals():
    q = dict(load("wechat_url_verification")["queryStringParameters"])
    now = int(q["timestamp"])
    with pytest.raises(Unauthorized):
        wechat.url_verification("not-the-token", q, now=now)
    with pytest.raises(Unauthorized):
        wechat.url_verification(TOKEN, q, now=now + 3600)
    with pytest.raises(Unauthorized):
        wechat.url_verification(TOKEN, {**q, "signature": "0" * 40}, now=now)
    with pytest.raises(Unauthorized):
        wechat.url_verification(TOKEN, {k: v for k, v in q.items() if k != "echostr"}, now=now)
    with pytest.raises(Unauthorized):
        wechat.url_verification(TOKEN, {}, now=now)


# --- sample events end to end (what the channel handler does) ------------------------------------------------


WECHAT_EVENTS = ["wechat_text", "wechat_bad_signature", "wechat_malformed", "wechat_unsupported",
                 "wechat_url_verification"]


@pytest.mark.parametrize("name", WECHAT_EVENTS)
def test_sample_events_are_rest_proxy_events(name):
    event = load(name)
    model = APIGatewayProxyEventModel.model_validate(event)
    assert model.path == "/channels/wechat/demo" and model.pathParameters == {"proxy": "channels/wechat/demo"}
    q = event["queryStringParameters"]
    assert {"signature", "timestamp", "nonce"} <= set(q)
    assert event["multiValueQueryStringParameters"] == {k: [v] for k, v in q.items()}
    if event["httpMethod"] == "POST":
        assert q["openid"] == OPENID and event["body"].startswith("<xml>")


def handle(event: dict) -> Inbound | None:
    q = event["queryStringParameters"]
    wechat.verify_request(TOKEN, q, now=int(q["timestamp"]) + 3)
    return wechat.to_inbound(wechat.parse_message(event["body"].encode("utf-8")), "demo")


def test_text_event():
    inbound = handle(load("wechat_text"))
    assert inbound == Inbound(workspace="demo", channel="wechat", customer_id=f"wx:{OPENID}",
                              text="你好，我的订单什么时候发货？", external_id="24601234567890123",
                              address=OPENID, kind="text")


def test_bad_signature_event():
    with pytest.raises(Unauthorized):
        handle(load("wechat_bad_signature"))


def test_malformed_event_is_signed_but_refused():
    with pytest.raises(InvalidRequest, match="malformed"):
        handle(load("wechat_malformed"))


def test_unsupported_event():
    inbound = handle(load("wechat_unsupported"))
    assert inbound.kind == "unsupported" and inbound.text == "[暂不支持的消息类型: location]"
    assert inbound.external_id == "24601234567890456" and inbound.customer_id == f"wx:{OPENID}"
    assert inbound.extra == {"msgType": "location", "locationX": "31.230416", "locationY": "121.473701",
                             "label": "上海市黄浦区人民大道"}


def test_sample_events_replayed_later_are_refused():
    q = load("wechat_text")["queryStringParameters"]
    with pytest.raises(Unauthorized, match="timestamp"):
        wechat.verify_request(TOKEN, q, now=int(q["timestamp"]) + 301)


# --- parsing -------------------------------------------------------------------------------------------


def test_parse_text():
    m = wechat.parse_message(xml("text", "<Content><![CDATA[  你好 <b>&amp; 世界 😀 ]]></Content>"))
    assert (m.to_user, m.from_user, m.create_time, m.msg_type, m.msg_id) == (GH, OPENID, 1795273709, "text", "1001")
    assert m.content == "  你好 <b>&amp; 世界 😀 " and m.supported and not m.is_event
    assert m.fields["Content"] == m.content


def test_parse_accepts_str_and_plain_text_elements():
    body = (f"<xml><ToUserName>{GH}</ToUserName><FromUserName>{OPENID}</FromUserName><CreateTime>5</CreateTime>"
            "<MsgType>TEXT</MsgType><Content>a &lt; b</Content><MsgId>7</MsgId></xml>")
    m = wechat.parse_message(body)
    assert (m.msg_type, m.content, m.create_time) == ("text", "a < b", 5)


def test_parse_image():
    m = wechat.parse_message(xml("image", "<PicUrl><![CDATA[http://mmbiz.qpic.cn/x.jpg]]></PicUrl>"
                                          "<MediaId><![CDATA[media-1]]></MediaId>"))
    assert (m.pic_url, m.media_id, m.supported) == ("http://mmbiz.qpic.cn/x.jpg", "media-1", True)


@pytest.mark.parametrize("msg_type, inner", [
    ("location", "<Location_X>23.1</Location_X><Location_Y>113.3</Location_Y><Scale>20</Scale>"),
    ("link", "<Title><![CDATA[t]]></Title><Description><![CDATA[d]]></Description><Url><![CDATA[http://x]]></Url>"),
    ("shortvideo", "<MediaId><![CDATA[m]]></MediaId><ThumbMediaId><![CDATA[t]]></ThumbMediaId>"),
    ("video", "<MediaId><![CDATA[m]]></MediaId><ThumbMediaId><![CDATA[t]]></ThumbMediaId>"),
    ("voice", "<MediaId><![CDATA[m]]></MediaId><Format><![CDATA[amr]]></Format>"),
    ("voice", ("<MediaId><![CDATA[m]]></MediaId><Format><![CDATA[amr]]></Format>"
              "<Recognition><![CDATA[]]></Recognition>")),
    ("miniprogrampage", "<Title><![CDATA[t]]></Title>"),
])
def test_unsupported_types_parse_with_a_flag(msg_type, inner):
    m = wechat.parse_message(xml(msg_type, inner))
    assert m.msg_type == msg_type and m.supported is False
    inbound = wechat.to_inbound(m, "demo")
    assert inbound.kind == "unsupported" and inbound.text == f"[暂不支持的消息类型: {msg_type}]"
    assert inbound.extra["msgType"] == msg_type and inbound.external_id == "1001"


def test_voice_with_recognition_is_text():
    m = wechat.parse_message(xml("voice", "<MediaId><![CDATA[m1]]></MediaId><Format><![CDATA[amr]]></Format>"
                                          "<Recognition><![CDATA[我要退货]]></Recognition>"))
    assert m.supported
    inbound = wechat.to_inbound(m, "demo")
    assert (inbound.kind, inbound.text) == ("text", "我要退货")
    assert inbound.extra == {"msgType": "voice", "mediaId": "m1", "format": "amr"}


@pytest.mark.parametrize("event", ["subscribe", "unsubscribe", "CLICK", "VIEW", "SCAN", ""])
def test_events_are_not_customer_messages(event):
    inner = f"<Event><![CDATA[{event}]]></Event><EventKey><![CDATA[MENU_1]]></EventKey>" if event else ""
    m = wechat.parse_message(xml("event", inner, msg_id=None))
    assert m.is_event and m.event == event and m.msg_id == ""
    assert wechat.to_inbound(m, "demo") is None


def test_event_with_nested_elements_parses():
    inner = ("<Event><![CDATA[scancode_push]]></Event><EventKey><![CDATA[k]]></EventKey>"
             "<ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType><ScanResult><![CDATA[1]]></ScanResult></ScanCodeInfo>")
    m = wechat.parse_message(xml("event", inner, msg_id=None))
    assert m.event == "scancode_push" and "ScanCodeInfo" not in m.fields


SECRET_TEXT = "我的身份证号是110101199003077777"


@pytest.mark.parametrize("body, match", [
    (b"", "empty"),
    (b"   \n", "empty"),
    (f"<xml><Content>{SECRET_TEXT}</Content>".encode(), "malformed"),
    (f"not xml {SECRET_TEXT}".encode(), "malformed"),
    (b"<xml><FromUserName>o1</FromUserName><MsgType>text</MsgType></xm>", "malformed"),
    (b"\xff\xfe<xml/>", "malformed"),
    (f"<root><FromUserName>o</FromUserName><MsgType>text</MsgType><Content>{SECRET_TEXT}</Content></root>".encode(),
     "<xml>"),
    (f"<xml><MsgType>text</MsgType><Content>{SECRET_TEXT}</Content></xml>".encode(), "FromUserName"),
    (f"<xml><FromUserName>  </FromUserName><MsgType>text</MsgType><Content>{SECRET_TEXT}</Content></xml>".encode(),
     "FromUserName"),
    (f"<xml><FromUserName>o1</FromUserName><Content>{SECRET_TEXT}</Content></xml>".encode(), "MsgType"),
    (b"<xml><FromUserName>o1</FromUserName><MsgType> </MsgType></xml>", "MsgType"),
    (b"<xml><FromUserName>o1</FromUserName><MsgType>text</MsgType><CreateTime>soon</CreateTime></xml>", "CreateTime"),
    (b"<xml><ToUserName>gh</ToUserName><Encrypt><![CDATA[abc==]]></Encrypt></xml>", "safe mode"),
])
def test_invalid_bodies(body, match):
    with pytest.raises(InvalidRequest, match=match) as info:
        wechat.parse_message(body)
    assert SECRET_TEXT not in str(info.value) and "110101" not in str(info.value)
    assert info.value.__cause__ is None


def test_body_over_64kb():
    filler = "字" * 22_000  # 66 000 bytes
    body = xml("text", f"<Content><![CDATA[{filler}]]></Content>")
    assert len(body) > 64 * 1024
    with pytest.raises(InvalidRequest, match="too large") as info:
        wechat.parse_message(body)
    assert "字" not in str(info.value)
    room = 64 * 1024 - len(xml("text", "<Content><![CDATA[]]></Content>"))
    just_under = xml("text", "<Content><![CDATA[" + "a" * room + "]]></Content>")
    assert len(just_under) == 64 * 1024
    assert len(wechat.parse_message(just_under).content) > 60_000


@pytest.mark.parametrize("body", [
    (b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    b"<xml><FromUserName>o</FromUserName><MsgType>text</MsgType><Content>&b;</Content></xml>"),
    (b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b"<xml><FromUserName>o</FromUserName><MsgType>text</MsgType><Content>&x;</Content></xml>"),
    b'<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/evil.dtd"><xml><FromUserName>o</FromUserName></xml>',
])
def test_dtds_and_entities_are_refused(body):
    with pytest.raises(InvalidRequest, match="DTD"):
        wechat.parse_message(body)


# --- Inbound mapping ----------------------------------------------------------------------------------------


def test_to_inbound_image():
    m = wechat.parse_message(xml("image", "<PicUrl><![CDATA[http://mmbiz.qpic.cn/p.jpg]]></PicUrl>"
                                          "<MediaId><![CDATA[mid-9]]></MediaId>", msg_id="555"))
    inbound = wechat.to_inbound(m, "shop")
    assert inbound == Inbound(workspace="shop", channel="wechat", customer_id=f"wx:{OPENID}",
                              text="[图片] http://mmbiz.qpic.cn/p.jpg", external_id="555", address=OPENID,
                              kind="image", extra={"picUrl": "http://mmbiz.qpic.cn/p.jpg", "mediaId": "mid-9"})


def test_to_inbound_without_msg_id_uses_openid_and_create_time():
    m = wechat.parse_message(xml("text", "<Content><![CDATA[hi]]></Content>", create_time="1795273711", msg_id=None))
    inbound = wechat.to_inbound(m, "demo")
    assert inbound.external_id == f"{OPENID}:1795273711" and inbound.text == "hi"


def test_to_inbound_channel_is_known():
    from kefu.channels import CHANNELS

    assert wechat.CHANNEL in CHANNELS


def test_message_is_a_frozen_dataclass():
    m = WeChatMessage(to_user=GH, from_user=OPENID, create_time=1, msg_type="text", content="x")
    with pytest.raises(AttributeError):
        m.content = "y"  # type: ignore[misc]
    assert wechat.to_inbound(m, "demo").external_id == f"{OPENID}:1"


# --- passive reply --------------------------------------------------------------------------------------------


def parse_reply(reply: str) -> dict:
    root = fromstring(reply.encode("utf-8"), forbid_dtd=True)
    assert root.tag == "xml"
    return {child.tag: child.text for child in root}


def test_passive_reply_shape():
    reply = wechat.passive_text_reply(OPENID, GH, "您好，请问有什么可以帮您？", 1795273712.9)
    assert reply.startswith("<xml><ToUserName><![CDATA[" + OPENID + "]]></ToUserName>")
    assert "<CreateTime>1795273712</CreateTime>" in reply and "<MsgType><![CDATA[text]]></MsgType>" in reply
    assert parse_reply(reply) == {"ToUserName": OPENID, "FromUserName": GH, "CreateTime": "1795273712",
                                  "MsgType": "text", "Content": "您好，请问有什么可以帮您？"}


@pytest.mark.parametrize("text", [
    "a]]>b", "]]>", "]]>]]>", "x]]]]>y", "]]", "<![CDATA[ inner ]]> tail", "a ]] > b", "<b>&amp;</b>", "行1\n行2\r\n😀",
])
def test_passive_reply_cdata_escaping_round_trips(text):
    reply = wechat.passive_text_reply(OPENID, GH, text, 0)
    assert parse_reply(reply)["Content"].replace("\r\n", "\n") == text.replace("\r\n", "\n")


def test_passive_reply_drops_characters_xml_cannot_carry():
    reply = wechat.passive_text_reply(OPENID, GH, "a\x00b\x08c\x1fd\ufffee\tf", 0)
    assert parse_reply(reply)["Content"] == "abcde\tf"


def test_passive_reply_escapes_ids_too():
    reply = wechat.passive_text_reply("o]]>x", GH, "hi", 0)
    assert parse_reply(reply)["ToUserName"] == "o]]>x"


def test_passive_reply_length_limit():
    assert parse_reply(wechat.passive_text_reply(OPENID, GH, "好" * 682, 0))["Content"] == "好" * 682  # 2046 bytes
    with pytest.raises(ValueError, match="2048"):
        wechat.passive_text_reply(OPENID, GH, "好" * 683, 0)


def test_passive_empty():
    assert wechat.PASSIVE_EMPTY == "success"


# --- splitting -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "", "a", "a" * 2048, "a" * 2049, "中" * 682 + "ab", "中" * 1000, "😀" * 600, "a" + "😀" * 600,
    ("客服" * 300 + "\n") * 5, "x" * 1500 + "\n" + "y" * 1500, "\n" * 3000, "é" * 1500 + "中文" * 400,
])
def test_split_text_invariants(text):
    parts = wechat.split_text(text)
    assert "".join(parts) == text
    assert all(len(p.encode("utf-8")) <= 2048 for p in parts)
    assert all(parts) or parts == [""]
    assert len(parts) == max(1, -(-len(text.encode("utf-8")) // 2048)) or "\n" in text


def test_split_text_exact_boundaries():
    assert wechat.split_text("a" * 2048) == ["a" * 2048]
    assert wechat.split_text("a" * 2049) == ["a" * 2048, "a"]
    parts = wechat.split_text("中" * 683)  # 2049 bytes: 682 characters fit (2046 bytes)
    assert parts == ["中" * 682, "中"]
    parts = wechat.split_text("a" + "😀" * 512)  # 1 + 2048 bytes
    assert parts == ["a" + "😀" * 511, "😀"]


def test_split_text_prefers_line_breaks():
    text = "x" * 1500 + "\n" + "y" * 1500
    assert wechat.split_text(text) == ["x" * 1500 + "\n", "y" * 1500]
    early = "x" * 10 + "\n" + "y" * 3000  # a break in the first half is not worth a tiny part
    assert wechat.split_text(early)[0] == early[:2048]


def test_split_text_small_limit():
    assert wechat.split_text("中文字", limit_bytes=6) == ["中文", "字"]
    with pytest.raises(ValueError):
        wechat.split_text("x", limit_bytes=3)


# --- the customer-service API against a fake WeChat ---------------------------------------------------------


class FakeWeChat:
    """WeChat's token and custom-send endpoints, at the HTTP boundary. ``script`` holds what the next
    sends do: "expire" (the server forgets its tokens first, so the send answers 40001), "500", "hang"
    (answer only after the test ends), "garbage", or an errcode (int)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.valid_tokens: set[str] = set()
        self.token_fetches = 0
        self.expires_in: object = 7200
        self.token_delay_s = 0.0
        self.reject_all_tokens = False
        self.script: list = []
        self.sent: list[dict] = []  # {"token", "json", "raw", "content_type"}
        self.requests: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.handle_error = lambda request, client_address: None  # a hung answer to a gone client
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, status: int, data: object, *, raw: bytes | None = None):
                body = raw if raw is not None else json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; encoding=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                fake.requests.append(f"GET {url.path}")
                if url.path != "/cgi-bin/token" or q.get("grant_type") != "client_credential":
                    return self._json(404, {"errcode": 404})
                if q.get("appid") != APP_ID:
                    return self._json(200, {"errcode": 40013, "errmsg": "invalid appid"})
                if q.get("secret") != APP_SECRET:
                    return self._json(200, {"errcode": 40125, "errmsg": f"invalid appsecret {q.get('secret')}"})
                if fake.token_delay_s:
                    fake.released.wait(fake.token_delay_s)
                with fake.lock:
                    fake.token_fetches += 1
                    token = f"ACCESS_TOKEN_{fake.token_fetches}_x9f8e7d6c5b4a"
                    fake.valid_tokens.add(token)
                self._json(200, {"access_token": token, "expires_in": fake.expires_in})

            def do_POST(self):
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                fake.requests.append(f"POST {url.path}")
                if url.path != "/cgi-bin/message/custom/send":
                    return self._json(404, {"errcode": 404})
                with fake.lock:
                    action = fake.script.pop(0) if fake.script else None
                    if action == "expire":
                        fake.valid_tokens.clear()
                if action == "500":
                    return self._json(500, {"errmsg": "internal"})
                if action == "hang":
                    fake.released.wait(2)
                    return self._json(200, {"errcode": 0, "errmsg": "ok"})
                if action == "garbage":
                    return self._json(200, None, raw=b"<html>gateway</html>")
                token = q.get("access_token", "")
                if fake.reject_all_tokens or token not in fake.valid_tokens:
                    return self._json(200, {"errcode": 40001, "errmsg": f"invalid credential, token {token}"})
                if isinstance(action, int):
                    return self._json(200, {"errcode": action, "errmsg": "refused"})
                fake.sent.append({"token": token, "json": json.loads(raw.decode("utf-8")), "raw": raw,
                                  "content_type": self.headers.get("Content-Type")})
                self._json(200, {"errcode": 0, "errmsg": "ok"})

        return Handler


@pytest.fixture
def fake():
    server = FakeWeChat()
    yield server
    server.close()


@pytest.fixture
def api(fake):
    return CustomerServiceApi(APP_ID, APP_SECRET, base_url=fake.url + "/", timeout_s=0.5)


def test_send_text_utf8_json(api, fake):
    assert api.send_text(OPENID, "您好！订单已发货 😀") == 1
    (sent,) = fake.sent
    assert sent["json"] == {"touser": OPENID, "msgtype": "text", "text": {"content": "您好！订单已发货 😀"}}
    assert "您好".encode() in sent["raw"] and b"\\u" not in sent["raw"]
    assert sent["content_type"] == "application/json; charset=utf-8"


def test_token_is_cached(api, fake):
    api.send_text(OPENID, "one")
    api.send_text(OPENID, "two")
    assert api.access_token() == fake.sent[0]["token"]
    assert fake.token_fetches == 1 and [s["json"]["text"]["content"] for s in fake.sent] == ["one", "two"]


def test_token_refreshed_shortly_before_expiry(fake):
    now = [1000.0]
    api = CustomerServiceApi(APP_ID, APP_SECRET, base_url=fake.url, timeout_s=0.5, clock=lambda: now[0])
    first = api.access_token()
    now[0] += 7200 - 301
    assert api.access_token() == first and fake.token_fetches == 1
    now[0] += 2  # within the 300 s margin
    second = api.access_token()
    assert second != first and fake.token_fetches == 2


def test_short_lived_token_margin(fake):
    fake.expires_in = 10
    now = [0.0]
    api = CustomerServiceApi(APP_ID, APP_SECRET, base_url=fake.url, timeout_s=0.5, clock=lambda: now[0])
    api.access_token()
    now[0] = 4.9
    api.access_token()
    assert fake.token_fetches == 1
    now[0] = 5.0
    api.access_token()
    assert fake.token_fetches == 2


def test_token_fetch_is_thread_safe(api, fake):
    fake.token_delay_s = 0.05
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(api.access_token())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2)
    assert fake.token_fetches == 1 and len(set(results)) == 1 and len(results) == 8


def test_40001_once_refreshes_and_retries(api, fake):
    api.send_text(OPENID, "before")
    fake.script = ["expire"]
    assert api.send_text(OPENID, "after") == 1
    assert fake.token_fetches == 2
    assert [s["json"]["text"]["content"] for s in fake.sent] == ["before", "after"]
    assert fake.sent[0]["token"] != fake.sent[1]["token"]


def test_persistent_40001_refreshes_only_once(api, fake):
    fake.reject_all_tokens = True
    with pytest.raises(ChannelError) as info:
        api.send_text(OPENID, "hello 客户")
    e = info.value
    assert (e.code, e.errcode, e.retryable) == ("errcode:40001", 40001, False)
    assert fake.token_fetches == 2 and fake.requests.count("POST /cgi-bin/message/custom/send") == 2
    assert "ACCESS_TOKEN" not in str(e) and "***" in str(e)  # WeChat's errmsg echoed the token: scrubbed
    assert "客户" not in str(e)


def test_http_500(api, fake):
    fake.script = ["500"]
    with pytest.raises(ChannelError) as info:
        api.send_text(OPENID, "hi")
    assert (info.value.code, info.value.retryable, info.value.errcode) == ("http:500", True, None)
    assert fake.sent == []


def test_timeout(fake):
    api = CustomerServiceApi(APP_ID, APP_SECRET, base_url=fake.url, timeout_s=0.1)
    api.access_token()
    fake.script = ["hang"]
    with pytest.raises(ChannelError) as info:
        api.send_text(OPENID, "hi")
    assert (info.value.code, info.value.retryable) == ("timeout", True)
    assert info.value.__cause__ is None and info.value.__context__ is None


@pytest.mark.parametrize("errcode, retryable", [(45015, False), (45047, False), (40003, False), (-1, True),
                                                 (45011, True)])
def test_wechat_errcodes(api, fake, errcode, retryable):
    fake.script = [errcode]
    with pytest.raises(ChannelError) as info:
        api.send_text(OPENID, "hi")
    assert (info.value.code, info.value.errcode, info.value.retryable) == (f"errcode:{errcode}", errcode, retryable)
    assert fake.token_fetches == 1


def test_not_json(api, fake):
    fake.script = ["garbage"]
    with pytest.raises(ChannelError) as info:
        api.send_text(OPENID, "hi")
    assert info.value.code == "bad_response" and info.value.retryable


def test_wrong_secret(fake):
    api = CustomerServiceApi(APP_ID, "wrong-secret-value-123", base_url=fake.url, timeout_s=0.5)
    with pytest.raises(ChannelError) as info:
        api.send_text(OPENID, "hi")
    e = info.value
    assert (e.code, e.retryable) == ("errcode:40125", False)
    assert "wrong-secret-value-123" not in str(e)  # the fake echoes the secret in errmsg
    assert fake.requests == ["GET /cgi-bin/token"]


def test_token_response_without_token(fake):
    fake.expires_in = None
    api = CustomerServiceApi(APP_ID, APP_SECRET, base_url=fake.url, timeout_s=0.5)
    with pytest.raises(ChannelError) as info:
        api.access_token()
    assert info.value.code == "bad_response"


def test_unreachable_server_does_not_leak_the_secret():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    api = CustomerServiceApi(APP_ID, APP_SECRET, base_url=f"http://127.0.0.1:{port}", timeout_s=0.2)
    with pytest.raises(ChannelError) as info:
        api.access_token()
    e = info.value
    assert (e.code, e.retryable) == ("network", True)
    assert APP_SECRET not in str(e) and e.__cause__ is None and e.__context__ is None
    assert APP_SECRET not in repr(api)


def test_long_text_is_split_into_several_messages(api, fake):
    text = "您好，" + "这是一段很长的回复。" * 300  # 9 009 bytes
    assert api.send_text(OPENID, text) == 5
    contents = [s["json"]["text"]["content"] for s in fake.sent]
    assert "".join(contents) == text and len(contents) == 5
    assert all(len(c.encode("utf-8")) <= 2048 for c in contents)
    assert all(len(json.loads(s["raw"])["text"]["content"].encode()) <= 2048 for s in fake.sent)


def test_failure_mid_split_reports_parts_sent(api, fake):
    fake.script = [None, None, "500"]
    with pytest.raises(ChannelError) as info:
        api.send_text(OPENID, "好" * 2000)  # 3 parts
    assert info.value.parts_sent == 2 and len(fake.sent) == 2


def test_send_text_refuses_empty_input(api, fake):
    with pytest.raises(ValueError):
        api.send_text(OPENID, "   ")
    with pytest.raises(ValueError):
        api.send_text("", "hi")
    assert fake.requests == []


def test_lone_surrogates_do_not_break_the_send(api, fake):
    api.send_text(OPENID, "a\ud800b")
    assert fake.sent[0]["json"]["text"]["content"] == "a\ufffdb"


def test_secrets_never_logged(api, fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.script = ["expire"]
    api.send_text(OPENID, "您好")
    fake.script = ["500"]
    with pytest.raises(ChannelError):
        api.send_text(OPENID, "您好")
    assert fake.token_fetches == 2
    assert any("/cgi-bin/token" in r.getMessage() for r in caplog.records)  # urllib3 did log the requests...
    assert APP_SECRET not in caplog.text and "ACCESS_TOKEN_" not in caplog.text  # ...with the secrets redacted
    assert "secret=***" in caplog.text and "access_token=***" in caplog.text
    assert "您好" not in caplog.text


def test_constructor_requires_credentials():
    with pytest.raises(ValueError):
        CustomerServiceApi("", APP_SECRET)
    with pytest.raises(ValueError):
        CustomerServiceApi(APP_ID, "")
    assert CustomerServiceApi(APP_ID, APP_SECRET).base_url == "https://api.weixin.qq.com"
