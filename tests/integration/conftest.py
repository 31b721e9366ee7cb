"""Real WebSocket clients, per-test workspaces and a bot shop, on the session's local stack (tests/conftest.py)."""

from __future__ import annotations

import json
import secrets
import time

import pytest
import requests

from kefu import tokens
from kefu.models import Agent
from kefu_local.wsclient import Socket


class World:
    """A fresh workspace per test, so tests cannot see each other's agents or conversations."""

    def __init__(self, stack, store, signing_key):
        self.stack, self.store, self.key = stack, store, signing_key
        self.workspace = "t-" + secrets.token_hex(4)
        store.put_workspace(self.workspace, "test")
        self.sockets: list[Socket] = []

    def agent(self, agent_id: str = "agent-1", name: str = "Agent One", max_concurrent: int = 5, **kw) -> Agent:
        agent = Agent(self.workspace, agent_id, name, max_concurrent=max_concurrent, **kw)
        self.store.put_agent(agent)
        return agent

    def settings(self, **settings) -> None:
        """Routing settings of this workspace (grace periods of a second or two keep tests fast)."""
        self.store.put_settings(self.workspace, settings)

    def token(self, kind: str, subject: str | None = None, **kw) -> str:
        return tokens.issue(self.key, kind=kind, workspace=kw.pop("workspace", self.workspace), subject=subject, **kw)

    def connect(self, token: str) -> Socket:
        socket = Socket(f"{self.stack.ws_url}?token={token}")
        self.sockets.append(socket)
        return socket

    def customer(self, customer_id: str = "cust-1", name: str = "Zhang San", **kw) -> Socket:
        return self.connect(self.token("visitor", customer_id, name=name, **kw))

    def agent_socket(self, agent_id: str = "agent-1") -> Socket:
        return self.connect(self.token("agent", agent_id))

    def close(self) -> None:
        for socket in self.sockets:
            socket.close()


@pytest.fixture
def world(stack, store, signing_key):
    w = World(stack, store, signing_key)
    yield w
    w.close()


@pytest.fixture
def world_factory(stack, store, signing_key):
    """More workspaces for one test (cross-workspace checks)."""
    made: list[World] = []

    def make() -> World:
        made.append(World(stack, store, signing_key))
        return made[-1]

    yield make
    for w in made:
        w.close()


def wait_for(read, until=bool, timeout: float = 30.0, every: float = 0.2):
    """Poll `read()` until `until(value)`; the last value on success, AssertionError with it on timeout."""
    deadline = time.monotonic() + timeout
    value = read()
    while not until(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; last value: {json.dumps(value, ensure_ascii=False, default=str)[:1500]}")
        time.sleep(every)
        value = read()
    return value


def chat(world, messages: int = 0) -> tuple[Socket, Socket, str]:
    """A customer and an agent in an open conversation, plus `messages` more customer messages."""
    world.agent("agent-1")
    agent = world.agent_socket("agent-1")
    customer = world.customer("cust-1")
    conversation_id = open_conversation(world, customer, agent)
    for i in range(messages):
        customer.request({"action": "message", "conversationId": conversation_id, "clientMessageId": f"m{i}",
                          "text": f"line {i}"}, type="ack")
    return customer, agent, conversation_id


def open_conversation(world, customer: Socket, agent: Socket, text: str = "你好，我的订单还没到") -> str:
    """Customer's first message; returns the conversation id once the agent has it."""
    ack = customer.request({"action": "message", "clientMessageId": "open-1", "text": text}, type="ack")
    agent.expect(type="assigned", conversationId=ack["conversationId"])
    return ack["conversationId"]


ALWAYS_ANSWER = {"answerAt": 0.0, "reviewAt": 0.0}
ALWAYS_REVIEW = {"answerAt": 1.0, "reviewAt": 0.0}


class Shop:
    """A workspace with a small knowledge base (the demo KB's first articles), a trained model, an admin
    and an agent; bot settings as given."""

    def __init__(self, stack, store, signing_key, bot: dict, train_timeout_s: float = 300):
        from kefu_local.seed import DEMO_KB

        self.stack, self.store, self.key = stack, store, signing_key
        self.ws = "bot-" + secrets.token_hex(4)
        store.put_workspace(self.ws, "bot test shop")
        store.put_agent(Agent(self.ws, "admin", "Admin", role="admin"))
        store.put_agent(Agent(self.ws, "agent-1", "Agent One"))
        store.put_agent(Agent(self.ws, "agent-2", "Agent Two"))
        self.admin = {"Authorization": "Bearer " + self.token("agent", "admin")}
        lines = [line for line in DEMO_KB.read_text(encoding="utf-8").splitlines() if line.strip()]
        kb = "\n".join(lines[:14] + [line for line in lines if '"lang": "en"' in line][:4])
        put = requests.put(self.url("bot"), json=bot, headers=self.admin, timeout=10)
        assert put.status_code == 200, put.text
        imported = requests.post(self.url("kb/import"), data=kb.encode(), headers=self.admin, timeout=60)
        assert imported.status_code == 200 and imported.json()["refused"] == 0, imported.text
        # the session's one kb_indexer trains every test's model in turn: on a loaded machine that queue is long
        deadline = time.monotonic() + train_timeout_s
        while not (requests.get(self.url("kb/model"), headers=self.admin, timeout=10).json()["model"] or {}).get("version"):
            assert time.monotonic() < deadline, "no model trained in time"
            time.sleep(0.3)
        self.sockets: list[Socket] = []

    def url(self, path: str) -> str:
        return f"{self.stack.api_url}/workspaces/{self.ws}/{path}"

    def token(self, kind: str, subject: str, **kw) -> str:
        return tokens.issue(self.key, kind=kind, workspace=self.ws, subject=subject, **kw)

    def connect(self, token: str) -> Socket:
        socket = Socket(f"{self.stack.ws_url}?token={token}")
        self.sockets.append(socket)
        return socket

    def customer(self, name: str = "Zhang San") -> Socket:
        return self.connect(self.token("visitor", "c-" + secrets.token_hex(3), name=name))

    def agent(self, agent_id: str = "agent-1") -> Socket:
        socket = self.connect(self.token("agent", agent_id))
        socket.request({"action": "presence", "status": "online"}, type="presence")
        return socket

    def close(self) -> None:
        for socket in self.sockets:
            socket.close()
