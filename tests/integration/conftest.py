"""The local stack, started once per test session, and real WebSocket clients."""

from __future__ import annotations

import json
import secrets
import time

import pytest
from websockets.sync.client import connect

from kefu import tokens
from kefu.models import Agent


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    from kefu_local.stack import LocalStack

    local = LocalStack(port=0, seed=True, log_dir=tmp_path_factory.mktemp("logs"))
    local.start()
    yield local
    local.stop()


@pytest.fixture(scope="session")
def signing_key(stack):
    from kefu_local import config

    return config.signing_key()


@pytest.fixture(scope="session")
def store(stack):
    from kefu import wiring

    return wiring.store()


class Socket:
    """A WebSocket client that keeps the frames it has not been asked for yet."""

    def __init__(self, url: str):
        self.ws = connect(url, open_timeout=10, max_size=2**21)
        self.backlog: list[dict] = []

    def send(self, frame) -> None:
        self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    def expect(self, match=None, timeout: float = 10.0, **fields) -> dict:
        """The first frame with these field values (and for which `match` is true), waiting if needed."""

        def wanted(frame):
            return all(frame.get(k) == v for k, v in fields.items()) and (match is None or match(frame))

        for i, frame in enumerate(self.backlog):
            if wanted(frame):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no frame like {fields} within {timeout} s; got {self.backlog}")
            try:
                frame = json.loads(self.ws.recv(timeout=remaining))
            except TimeoutError:
                continue
            if wanted(frame):
                return frame
            self.backlog.append(frame)

    def request(self, frame: dict, **expect) -> dict:
        """Send and wait for the direct reply (an ack, a sync, an error...)."""
        self.send(frame)
        return self.expect(**expect)

    def quiet(self, seconds: float = 0.5) -> list[dict]:
        """Whatever arrives within `seconds` (to prove that nothing else does)."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                self.backlog.append(json.loads(self.ws.recv(timeout=remaining)))
            except TimeoutError:
                break
        return self.backlog

    def close(self) -> None:
        self.ws.close()


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
