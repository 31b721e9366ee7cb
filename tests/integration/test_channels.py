"""Channels on the local stack: an app backend's REST channel and a WeChat Official Account join the same
conversations as the widget. WeChat's servers are faked at the HTTP boundary only (a real HTTP server on
loopback serving /cgi-bin/token and /cgi-bin/message/custom/send)."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from .conftest import open_conversation, wait_for

TOKEN = "kefuToken42"


class FakeWeChat:
    def __init__(self):
        self.sent: list[dict] = []
        sent = self.sent

        class Handler(BaseHTTPRequestHandler):
            def _json(self, payload):
                body = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                query = parse_qs(urlparse(self.path).query)
                if query.get("secret") == ["wx-secret-123"]:
                    self._json({"access_token": "AT-1", "expires_in": 7200})
                else:
                    self._json({"errcode": 40125, "errmsg": "invalid appsecret"})

            def do_POST(self):  # noqa: N802
                query = parse_qs(urlparse(self.path).query)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if query.get("access_token") != ["AT-1"]:
                    return self._json({"errcode": 40001, "errmsg": "invalid credential"})
                sent.append(body)
                self._json({"errcode": 0, "errmsg": "ok"})

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def wechat_api():
    fake = FakeWeChat()
    yield fake
    fake.server.shutdown()


def _signed(timestamp: int | None = None) -> dict:
    timestamp = str(timestamp or int(time.time()))
    nonce = secrets.token_hex(4)
    signature = hashlib.sha1("".join(sorted([TOKEN, timestamp, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": timestamp, "nonce": nonce}


def _xml(openid: str, msg_type: str, content: str = "", msg_id: str | None = None, extra: str = "") -> bytes:
    msg_id = msg_id or str(secrets.randbits(60))
    return (f"<xml><ToUserName><![CDATA[gh_kefu]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId>{extra}</xml>").encode()


def test_wechat_followers_chat_with_agents_through_the_official_account(world, wechat_api):
    world.agent("ada", "Ada", role="admin")
    world.agent("bob", "Bob")
    admin = {"Authorization": f"Bearer {world.token('agent', 'ada')}"}
    api = world.stack.api_url
    settings = requests.put(f"{api}/workspaces/{world.workspace}/channels/wechat", headers=admin, timeout=10,
                            json={"token": TOKEN, "appId": "wx1234567890", "appSecret": "wx-secret-123",
                                  "apiBase": wechat_api.url})
    assert settings.status_code == 200, settings.text
    assert settings.json()["appSecretSet"] is True and "appSecret" not in settings.json()
    assert requests.put(f"{api}/workspaces/{world.workspace}/channels/wechat", headers=admin, timeout=10,
                        json={"token": "no spaces!", "appId": "wx1", "appSecret": "x"}).status_code == 422
    callback = f"{api}/channels/wechat/{world.workspace}"

    # URL verification (WeChat's console calls it once)
    echo = requests.get(callback, params={**_signed(), "echostr": "e-123"}, timeout=10)
    assert echo.status_code == 200 and echo.text == "e-123"
    assert requests.get(callback, params={**_signed(), "signature": "0" * 40, "echostr": "x"}, timeout=10).status_code == 401

    agent = world.agent_socket("bob")
    first = requests.post(callback, params=_signed(), data=_xml("oFollower1", "text", "你好，我要退货", "9001"),
                          headers={"Content-Type": "text/xml"}, timeout=10)
    assert first.status_code == 200 and first.text == "success"  # the passive reply: replies go asynchronously
    assigned = agent.expect(type="assigned")
    conversation = assigned["conversationId"]
    assert assigned["customer"]["id"] == "wx:oFollower1"
    # WeChat retries a message it got no answer for: the same MsgId is the same message
    requests.post(callback, params=_signed(), data=_xml("oFollower1", "text", "你好，我要退货", "9001"), timeout=10)
    sync = agent.request({"action": "sync", "conversationId": conversation, "afterSeq": 0}, type="sync")
    customer_lines = [m for m in sync["messages"] if m["sender"]["role"] == "customer"]
    assert [m["text"] for m in customer_lines] == ["你好，我要退货"] and customer_lines[0]["channel"] == "wechat"

    # the agent's reply goes out through the customer-service API
    agent.request({"action": "message", "conversationId": conversation, "clientMessageId": "r1",
                   "text": "您好，请提供订单号"}, type="ack")
    sent = wait_for(lambda: wechat_api.sent)
    assert sent == [{"touser": "oFollower1", "msgtype": "text", "text": {"content": "您好，请提供订单号"}}]

    # bad input is refused clearly and stores nothing; unsupported types become a note
    bad_signature = requests.post(callback, params={**_signed(), "signature": "f" * 40},
                                  data=_xml("oFollower1", "text", "伪造"), timeout=10)
    assert bad_signature.status_code == 401 and bad_signature.json()["error"]["code"] == "unauthorized"
    stale = requests.post(callback, params=_signed(int(time.time()) - 3600), data=_xml("oFollower1", "text", "旧"),
                          timeout=10)
    assert stale.status_code == 401
    malformed = requests.post(callback, params=_signed(), data=b"<xml><FromUserName>oops", timeout=10)
    assert malformed.status_code == 422 and malformed.json()["error"]["code"] == "invalid_request"
    location = requests.post(callback, params=_signed(), data=_xml(
        "oFollower1", "location", msg_id="9002", extra="<Location_X>23.1</Location_X><Location_Y>113.2</Location_Y>"),
        timeout=10)
    assert location.status_code == 200
    note = agent.expect(lambda f: f.get("sender", {}).get("role") == "customer", type="message",
                        conversationId=conversation)
    assert note["text"].startswith("[暂不支持的消息类型: location]") and note["channel"] == "wechat"
    subscribe = b"<xml><FromUserName>oFollower2</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType>" \
                b"<Event>subscribe</Event></xml>"
    assert requests.post(callback, params=_signed(), data=subscribe, timeout=10).text == "success"
    unknown = requests.post(f"{api}/channels/wechat/no-such-workspace", params=_signed(),
                            data=_xml("o", "text", "x"), timeout=10)
    assert unknown.status_code == 404
    final = agent.request({"action": "sync", "conversationId": conversation, "afterSeq": 0}, type="sync")
    assert "伪造" not in json.dumps(final, ensure_ascii=False) and "旧" not in [m["text"] for m in final["messages"]]


def test_an_app_backend_continues_the_widget_conversation_over_rest(world, stack):
    world.agent("ada", "Ada", role="admin")
    world.agent("bob", "Bob")
    key = requests.post(f"{stack.api_url}/workspaces/{world.workspace}/api-keys", json={"name": "app"},
                        headers={"Authorization": f"Bearer {world.token('agent', 'ada')}"}, timeout=10).json()["key"]
    integrations = f"{stack.api_url}/integrations"
    token = requests.post(f"{integrations}/visitor-tokens", json={"customerId": "app-77", "name": "孙八"},
                          headers={"x-api-key": key}, timeout=10).json()["token"]
    agent = world.agent_socket("bob")
    widget = world.connect(token)
    conversation = open_conversation(world, widget, agent, text="网页上问一句")

    def post(message_id: str, text: str):
        return requests.post(f"{integrations}/channels/rest/messages", headers={"x-api-key": key}, timeout=10,
                             json={"customerId": "app-77", "customerName": "孙八", "text": text, "messageId": message_id})

    reply = post("app-msg-1", "在 App 里接着问")
    assert reply.status_code == 202, reply.text
    assert reply.json()["conversationId"] == conversation  # one customer, one conversation, across channels
    pushed = agent.expect(type="message", conversationId=conversation, text="在 App 里接着问")
    assert pushed["channel"] == "rest" and pushed["sender"]["id"] == "app-77"
    assert widget.expect(type="message", text="在 App 里接着问")["channel"] == "rest"  # the widget sees it too
    again = post("app-msg-1", "在 App 里接着问")
    assert again.json()["seq"] == reply.json()["seq"]  # a resend stores nothing twice
    assert post("app-msg-2", "   ").status_code == 422
    assert requests.post(f"{integrations}/channels/rest/messages", json={"customerId": "x", "text": "y",
                                                                        "messageId": "z"}, timeout=10).status_code == 403
    profile = requests.get(f"{integrations}/customers/app-77", headers={"x-api-key": key}, timeout=10).json()
    assert profile["channels"] == ["web"]  # the conversation's channel is where it opened
    messages = requests.get(f"{integrations}/conversations/{conversation}/messages", headers={"x-api-key": key},
                            timeout=10).json()["items"]
    assert [(m["text"], m.get("channel", "web")) for m in messages if m["sender"]["role"] == "customer"] == [
        ("网页上问一句", "web"), ("在 App 里接着问", "rest")]
