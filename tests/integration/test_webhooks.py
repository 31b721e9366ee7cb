"""Outgoing webhooks on the local stack: subscriptions over REST, signed deliveries from the stream
functions to real HTTP servers on loopback, and a subscriber that is down (retried, recorded, visible)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from kefu import webhooks
from kefu_local.services import free_port

from .conftest import chat, wait_for


class Subscriber:
    """A real HTTP endpoint on 127.0.0.1 that keeps what it receives."""

    def __init__(self):
        self.received: list[dict] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"headers": dict(self.headers), "body": body})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, event_type: str) -> list[dict]:
        return [json.loads(r["body"]) for r in self.received if r["headers"].get("Kefu-Event") == event_type]

    def close(self):
        self.server.shutdown()


@pytest.fixture
def subscriber():
    s = Subscriber()
    yield s
    s.close()


def test_subscribers_get_signed_events_and_a_dead_one_does_not_hold_them_up(world, subscriber):
    world.agent("ada", "Ada", role="admin")
    admin = {"Authorization": f"Bearer {world.token('agent', 'ada')}"}
    base = f"{world.stack.api_url}/workspaces/{world.workspace}/webhooks"

    # validation and roles
    world.agent("bob", "Bob")
    plain = {"Authorization": f"Bearer {world.token('agent', 'bob')}"}
    assert requests.post(base, json={"url": subscriber.url, "events": ["*"]}, headers=plain, timeout=10).status_code == 403
    for bad in ({"url": "ftp://x", "events": ["*"]}, {"url": subscriber.url, "events": ["ticket.nope"]},
                {"url": subscriber.url, "events": []}, {"url": "http://user:pw@127.0.0.1/x", "events": ["*"]}):
        reply = requests.post(base, json=bad, headers=admin, timeout=10)
        assert reply.status_code == 422, (bad, reply.text)
        assert reply.json()["error"]["code"] == "invalid_request"

    good = requests.post(base, json={"url": subscriber.url, "events": ["ticket.created", "ticket.status_changed",
                                                                       "message.created", "conversation.closed"],
                                     "description": "CRM"}, headers=admin, timeout=10)
    assert good.status_code == 201, good.text
    secret = good.json()["secret"]
    dead_url = f"http://127.0.0.1:{free_port()}/hooks"  # nobody listens
    dead = requests.post(base, json={"url": dead_url, "events": ["ticket.created"]}, headers=admin, timeout=10).json()
    listed = requests.get(base, headers=admin, timeout=10).json()["items"]
    assert {s["url"] for s in listed} == {subscriber.url, dead_url} and all("secret" not in s for s in listed)

    # a ticket: both subscribers are due ticket.created; the live one gets it at once
    ticket = requests.post(f"{world.stack.api_url}/workspaces/{world.workspace}/tickets",
                           json={"subject": "webhook 测试"}, headers=plain, timeout=10).json()
    created = wait_for(lambda: subscriber.events("ticket.created"), timeout=60)
    assert created[0]["data"]["ticketId"] == ticket["ticketId"] and created[0]["workspace"] == world.workspace
    request = next(r for r in subscriber.received if r["headers"]["Kefu-Event"] == "ticket.created")
    assert webhooks.verify(secret, request["headers"]["Kefu-Signature"], request["body"], time.time())
    assert not webhooks.verify(secret, request["headers"]["Kefu-Signature"], request["body"] + b" ", time.time())
    assert request["headers"]["Kefu-Delivery"].startswith("whd_")

    # conversations: messages and the close
    customer, agent, conversation = chat(world, messages=1)
    agent.request({"action": "close", "conversationId": conversation}, type="closed")
    messages = wait_for(lambda: [e for e in subscriber.events("message.created")
                                 if e["data"]["conversationId"] == conversation and e["data"]["text"] == "line 0"])
    assert messages and messages[0]["data"]["sender"]["role"] == "customer"
    assert wait_for(lambda: subscriber.events("conversation.closed"))[0]["data"]["conversationId"] == conversation
    ids = [json.loads(r["body"])["id"] for r in subscriber.received]
    assert len(ids) == len(set(ids))  # each event once

    # the dead subscriber's failures are recorded and visible
    failures = wait_for(lambda: requests.get(f"{base}/{dead['subscriptionId']}/deliveries", headers=admin,
                                             timeout=10).json()["items"], timeout=30)
    assert failures[0]["ok"] is False and failures[0]["attempts"] == 4 and failures[0]["eventType"] == "ticket.created"
    assert failures[0]["error"]
    ok = requests.get(f"{base}/{good.json()['subscriptionId']}/deliveries", headers=admin, timeout=10).json()["items"]
    assert ok and all(d["ok"] and d["statusCode"] == 204 and d["attempts"] == 1 for d in ok)
    # the live subscriber was not held up by the dead one's retries (0.5 + 1 + 2 s of backoff)
    live = next(d for d in ok if d["eventType"] == "ticket.created")
    assert live["durationMs"] < 1000 and live["at"] < failures[0]["at"]

    # rotation: a new secret, shown once; deletion stops deliveries
    rotated = requests.post(f"{base}/{good.json()['subscriptionId']}/rotate-secret", headers=admin, timeout=10).json()
    assert rotated["secret"] != secret
    assert requests.delete(f"{base}/{dead['subscriptionId']}", headers=admin, timeout=10).json() == {"deleted": dead["subscriptionId"]}
    assert requests.get(f"{base}/{dead['subscriptionId']}", headers=admin, timeout=10).status_code == 404
