"""Routing benchmark: simultaneous route requests, random closes, the queue and its wait estimate.

`kefu bench routing --agents 20 --conversations 500` prints run()'s result as JSON.

What it does, in one process (the local stack's gateway and handlers run in-process, moto in a
child process), unless `url` names a stack that is already running:

1. starts a LocalStack (port 0, no demo seed) and creates a fresh workspace (least_busy) with
   `agents` agents of `capacity` seats each; connects one WebSocket per agent and waits until the
   store shows every agent online;
2. warm-up: `warmup` conversations are opened and closed the same way as the measured ones, so
   the workspace has learned handle times (a real workspace has history; with none the estimate
   assumes 300 s per conversation). Not measured;
3. measured phase: `conversations` customers connect; then all of them send their first message
   at once (simultaneous route requests: the workspace has no bot, so each opens a conversation
   and routes it). An agent client that receives `assigned` draws an exponential handle time
   (mean `mean_handle_s`, seeded), waits that long and sends `close`; each close frees a seat and
   the server assigns the queue head. The phase ends when every conversation is assigned and
   closed, or at the overall timeout (what is unfinished is reported, with its state in the store);
4. a thread reads the agents' loads from the store every 0.2 s (and once more the moment the
   first customer learns it is queued), for the capacity check and the load spread.

DynamoDB requests are counted at botocore's client, by thread: the stack's (gateway workers,
their fan-out pool, stream and SQS pollers) from the first message sent until the stream
poller has gone quiet after the last close; this benchmark's own reads run on `bench-*`
threads and are left out. Each request is also attributed to the Lambda function whose
invocation made it and to the kefu.adapters.dynamodb method that issued it.

Call run() in a fresh process (the CLI does): the local stack binds PynamoDB's models and
kefu.wiring's cached adapters to the first endpoint a process sees.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import random
import re
import secrets
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

POLL_INTERVAL_S = 0.2  # store reads of the agents' loads
CONNECT_CONCURRENCY = 16  # customer WebSocket handshakes at once
OPEN_TIMEOUT_S = 60.0
PROGRESS_S = 15.0
# The gateway closes a socket after 10 minutes without a frame from the client (as API Gateway does);
# like the reference client (web/kefu-client.js), an idle client sends a cheap real frame every 4 minutes.
KEEPALIVE_S = 240.0
TEXT = "您好，我想查一下我的订单 #20391 什么时候发货？ Thanks!"


# ======================================================================== entry point


def run(agents: int = 20, conversations: int = 500, capacity: int = 3, mean_handle_s: float = 1.0,
        warmup: int = 40, seed: int | None = None, url: str | None = None, timeout_s: float = 900.0,
        dump: str | None = None) -> dict:
    """Run the benchmark and return its report (a JSON-serialisable dict).

    url: the base URL of a stack that is already running (`kefu dev`, e.g. http://127.0.0.1:8000);
    AWS_ENDPOINT_URL must then name its DynamoDB (moto) endpoint, for the set-up and the load
    samples. AWS request counts are not available then (null).
    dump: a file to write one JSON line per measured conversation to (its timeline as the clients and
    the store saw it), for looking into a result.
    """
    if agents < 1 or conversations < 1 or capacity < 1 or warmup < 0 or mean_handle_s < 0:
        raise ValueError("agents, conversations and capacity must be at least 1, warmup and mean_handle_s >= 0")
    if seed is None:
        seed = secrets.randbelow(2**31)
    from kefu import tokens

    from kefu_local import config

    stack = None
    counter: _RequestCounter | None = None
    try:
        if url is None:
            from kefu_local.stack import LocalStack

            stack = LocalStack(port=0, seed=False).start()
            ws_url = stack.ws_url
            counter = _RequestCounter(stack.gateway.runtime)
            counter.install()
        else:
            ws_url = re.sub(r"^http", "ws", url.rstrip("/")) + "/ws"
            if not (os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")):
                raise RuntimeError("with url=..., set AWS_ENDPOINT_URL to the stack's DynamoDB endpoint")
            from kefu_local.services import LOCAL_CREDENTIALS

            for key, value in LOCAL_CREDENTIALS.items():
                os.environ.setdefault(key, value)

        bench = _Bench(ws_url, config.signing_key(), tokens, counter, agents, conversations, capacity,
                       mean_handle_s, warmup, seed, timeout_s)
        bench.setup()
        asyncio.run(bench.drive())
        bench.read_back()
    finally:
        if counter is not None:
            counter.uninstall()
        if stack is not None:
            stack.stop()
    if dump:
        bench.dump(dump)
    return bench.report(external=url is not None)


# ======================================================================== the clients


@dataclass
class _Conversation:
    """One customer and the conversation their first message opens, as the clients saw it."""

    subject: str
    phase: str
    handle_s: float
    peer: _Peer | None = None
    sent: float | None = None
    acked: float | None = None
    conversation_id: str | None = None
    assigned: float | None = None  # the agent's socket received `assigned`
    agent_id: str | None = None
    routed: float | None = None  # the customer's socket received `routed` assigned
    queue_frames: list[tuple[float, int, int | None]] = field(default_factory=list)  # arrival, position, estimate
    close_sent: float | None = None
    closed: float | None = None  # the agent's socket received `closed`
    server: object | None = None  # kefu.models.Conversation read back after the run


class _Peer:
    def __init__(self, role: str, ident: str, ws, bench: _Bench, conversation: _Conversation | None = None):
        self.role, self.id, self.ws, self.bench, self.conversation = role, ident, ws, bench, conversation
        self.task: asyncio.Task | None = None
        self.last_sent = time.perf_counter()

    async def send(self, frame: dict) -> None:
        self.last_sent = time.perf_counter()
        await self.ws.send(json.dumps(frame, ensure_ascii=False, separators=(",", ":")))

    async def read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self.ws:
                arrived = time.perf_counter()
                self.bench.on_frame(self, json.loads(raw), arrived)
        except ConnectionClosed:
            pass


@dataclass
class _Seats:
    """An agent's conversations as its client sees them."""

    open: set = field(default_factory=set)  # assigned, close not sent yet: certainly open on the server
    closing: set = field(default_factory=set)  # close sent, `closed` not received yet
    peak: int = 0


class _Bench:
    def __init__(self, ws_url, key, tokens, counter, agents, conversations, capacity, mean_handle_s, warmup, seed,
                 timeout_s):
        self.ws_url, self.key, self.tokens, self.counter = ws_url, key, tokens, counter
        self.n_agents, self.n, self.capacity = agents, conversations, capacity
        self.mean_handle_s, self.n_warmup, self.seed, self.timeout_s = mean_handle_s, warmup, seed, timeout_s
        self.run_id = secrets.token_hex(3)
        self.workspace = f"bench-routing-{self.run_id}"
        self.agent_ids = [f"agent-{i:03d}" for i in range(agents)]
        rng = random.Random(seed)
        self.convs: dict[str, _Conversation] = {}
        for phase, count in (("warmup", warmup), ("measured", conversations)):
            for i in range(count):
                subject = f"cust-{phase[0]}{i:04d}"
                handle = rng.expovariate(1 / mean_handle_s) if mean_handle_s > 0 else 0.0
                self.convs[subject] = _Conversation(subject, phase, handle)
        self.by_conversation_id: dict[str, _Conversation] = {}
        self.seats = {a: _Seats() for a in self.agent_ids}
        self.phase = "setup"
        self.violations_client: list[dict] = []
        self.close_in_flight_overlaps = 0  # `assigned` arrived while a close of the same agent was in flight
        self.double_assignments: list[dict] = []
        self.errors: list[str] = []
        self.close_tasks: set[asyncio.Task] = set()
        self.done: dict[str, asyncio.Event] = {}
        self.left: dict[str, int] = {}
        self.first_queued: float | None = None
        self.sampler: _LoadSampler | None = None
        self.phase_s: dict[str, float] = {}
        self.window: tuple[float, float] | None = None  # measured phase: first send .. last close
        self.handle_before: float | None = None
        self.handle_after: float | None = None
        self.loads_before: list[int] = []
        self.timed_out = False
        self.keepalive_frames = 0
        self.requests: Counter | None = None  # (source, op, function, method) -> n, the measured phase

    # ------------------------------------------------------------ set-up (synchronous, before the clients)

    def setup(self) -> None:
        from kefu import wiring
        from kefu.models import Agent

        store = wiring.store()
        store.put_workspace(self.workspace, "Routing bench")
        store.put_settings(self.workspace, {"strategy": "least_busy"})
        for i, agent_id in enumerate(self.agent_ids):
            store.put_agent(Agent(self.workspace, agent_id, f"Agent {i}", max_concurrent=self.capacity))

    # ------------------------------------------------------------ the run

    async def drive(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.io = ThreadPoolExecutor(max_workers=2, thread_name_prefix="bench-io")
        from kefu import wiring

        self.store = wiring.store()
        agent_peers: list[_Peer] = []
        try:
            started = time.perf_counter()
            for agent_id in self.agent_ids:
                token = self.tokens.issue(self.key, kind="agent", workspace=self.workspace, subject=agent_id)
                agent_peers.append(await self._open(token, "agent", agent_id))
            await self._until_agents_online()
            self.phase_s["agents_online"] = time.perf_counter() - started

            if self.n_warmup:
                started = time.perf_counter()
                await self._phase("warmup", timeout_s=max(60.0, self.timeout_s / 4))
                self.phase_s["warmup"] = time.perf_counter() - started
            self.handle_before = await self._server_mean_handle()
            self.loads_before = [a.load for a in await self._agents()]

            keepalive = asyncio.create_task(self._keepalive(agent_peers))
            self.sampler = _LoadSampler(self.store, self.workspace)
            self.sampler.start()
            started = time.perf_counter()
            await self._phase("measured", timeout_s=self.timeout_s)
            self.phase_s["measured"] = time.perf_counter() - started
            self.sampler.stop()
            self.handle_after = await self._server_mean_handle()
            keepalive.cancel()
        finally:
            if self.sampler is not None:
                self.sampler.stop()
            for task in self.close_tasks:
                task.cancel()
            peers = agent_peers + [c.peer for c in self.convs.values() if c.peer is not None]
            await asyncio.gather(*(p.ws.close() for p in peers), return_exceptions=True)
            for peer in peers:
                if peer.task is not None:
                    peer.task.cancel()
            self.io.shutdown(wait=False)

    async def _phase(self, phase: str, timeout_s: float) -> None:
        convs = [c for c in self.convs.values() if c.phase == phase]
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def connect(conv: _Conversation) -> None:
            token = self.tokens.issue(self.key, kind="visitor", workspace=self.workspace, subject=conv.subject,
                                      name=f"Customer {conv.subject}")
            async with gate:
                conv.peer = await self._open(token, "customer", conv.subject, conv)

        await asyncio.gather(*(connect(c) for c in convs))
        self.done[phase] = asyncio.Event()
        self.left[phase] = len(convs)
        await self._settle()  # the connects' stream records are not the phase's
        if phase == "measured" and self.counter is not None:
            self.counter.start()
        self.phase = phase

        async def first_message(conv: _Conversation) -> None:
            conv.sent = time.perf_counter()
            await conv.peer.send({"action": "message", "clientMessageId": f"{conv.subject}-1", "text": TEXT})

        first = time.perf_counter()
        await asyncio.gather(*(first_message(c) for c in convs))
        progress = asyncio.create_task(self._progress(phase, convs, first))
        try:
            await asyncio.wait_for(self.done[phase].wait(), timeout_s)
        except TimeoutError:
            self.timed_out = True
            self.errors.append(f"{phase}: timed out after {timeout_s:.0f} s with {self.left[phase]} not closed")
        finally:
            progress.cancel()
        last = max((c.closed for c in convs if c.closed is not None), default=time.perf_counter())
        if phase == "measured":
            self.window = (first, last)
            if self.counter is not None:
                await self._settle()
                self.requests = self.counter.stop()
        # the customers hang up (their conversations are closed); the next phase starts clean
        await asyncio.gather(*(c.peer.ws.close() for c in convs), return_exceptions=True)

    async def _keepalive(self, agent_peers: list[_Peer]) -> None:
        """What the reference client does for an idle socket: `sync` of the conversation it follows, else
        `inbox`. Only a wait of more than KEEPALIVE_S needs it (agents send `close` often enough)."""
        while True:
            await asyncio.sleep(10)
            now = time.perf_counter()
            peers = agent_peers + [c.peer for c in self.convs.values()
                                   if c.peer is not None and c.closed is None and c.sent is not None]
            for peer in peers:
                if now - peer.last_sent < KEEPALIVE_S:
                    continue
                conv = peer.conversation
                frame = ({"action": "sync", "conversationId": conv.conversation_id, "afterSeq": 0, "limit": 1}
                         if conv is not None and conv.conversation_id else {"action": "inbox"})
                self.keepalive_frames += 1
                try:
                    await peer.send(frame)
                except Exception as error:  # a socket closed meanwhile: reported by its missing frames
                    self.errors.append(f"keepalive {peer.role} {peer.id}: {error}")

    async def _progress(self, phase: str, convs: list[_Conversation], first: float) -> None:
        """A line on stderr every PROGRESS_S: a long run shows it is moving."""
        while True:
            await asyncio.sleep(PROGRESS_S)
            print(f"kefu bench routing: {phase} {time.perf_counter() - first:.0f} s: "
                  f"acked {sum(1 for c in convs if c.acked)}, assigned {sum(1 for c in convs if c.assigned)}, "
                  f"closed {sum(1 for c in convs if c.closed)} of {len(convs)}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------ frames

    def on_frame(self, peer: _Peer, frame: dict, arrived: float) -> None:
        kind = frame.get("type")
        if peer.role == "customer":
            conv = peer.conversation
            if kind == "ack":
                conv.acked = conv.acked or arrived
                self._know(conv, frame.get("conversationId"))
            elif kind == "queue":
                self._know(conv, frame.get("conversationId"))
                conv.queue_frames.append((arrived, int(frame["position"]), frame.get("estimatedWaitSeconds")))
                if conv.phase == "measured" and self.first_queued is None:
                    self.first_queued = arrived
                    if self.sampler is not None:
                        self.sampler.saturation_now()
            elif kind == "routed":
                self._know(conv, frame.get("conversationId"))
                if frame.get("status") == "assigned":
                    conv.routed = conv.routed or arrived
            elif kind == "error" or kind == "offline" or (kind is None and "message" in frame):
                self.errors.append(f"customer {conv.subject}: {str(frame)[:300]}")
            return
        seats = self.seats[peer.id]
        if kind == "assigned":
            conv = self.convs.get((frame.get("customer") or {}).get("id", ""))
            if conv is None:
                self.errors.append(f"agent {peer.id}: assigned for an unknown customer: {str(frame)[:200]}")
                return
            self._know(conv, frame["conversationId"])
            if conv.conversation_id in seats.open or conv.conversation_id in seats.closing:
                self.errors.append(f"agent {peer.id}: assigned twice: {conv.conversation_id}")
                return
            if conv.agent_id is not None and conv.agent_id != peer.id:
                self.double_assignments.append({"conversationId": conv.conversation_id,
                                                "agents": [conv.agent_id, peer.id]})
            if conv.assigned is None:
                conv.assigned, conv.agent_id = arrived, peer.id
            seats.open.add(conv.conversation_id)
            held = len(seats.open) + len(seats.closing)
            seats.peak = max(seats.peak, held)
            if len(seats.open) > self.capacity:
                self.violations_client.append({"agent": peer.id, "open": len(seats.open), "max": self.capacity,
                                               "phase": conv.phase})
            elif held > self.capacity:
                self.close_in_flight_overlaps += 1
            task = asyncio.create_task(self._close_later(peer, conv))
            self.close_tasks.add(task)
            task.add_done_callback(self.close_tasks.discard)
        elif kind == "closed":
            conv = self.by_conversation_id.get(frame.get("conversationId", ""))
            if conv is None or conv.closed is not None:
                return  # the pushed `closed` and the direct reply: the first one counts
            conv.closed = arrived
            seats.closing.discard(conv.conversation_id)
            seats.open.discard(conv.conversation_id)
            self.left[conv.phase] -= 1
            if self.left[conv.phase] == 0:
                self.done[conv.phase].set()
        elif kind == "error" or (kind is None and "message" in frame):
            self.errors.append(f"agent {peer.id}: {str(frame)[:300]}")

    def _know(self, conv: _Conversation, conversation_id: str | None) -> None:
        if conversation_id and conv.conversation_id is None:
            conv.conversation_id = conversation_id
            self.by_conversation_id[conversation_id] = conv

    async def _close_later(self, peer: _Peer, conv: _Conversation) -> None:
        await asyncio.sleep(conv.handle_s)
        seats = self.seats[peer.id]
        seats.open.discard(conv.conversation_id)
        seats.closing.add(conv.conversation_id)
        conv.close_sent = time.perf_counter()
        await peer.send({"action": "close", "conversationId": conv.conversation_id})

    # ------------------------------------------------------------ helpers

    async def _open(self, token: str, role: str, ident: str, conv: _Conversation | None = None) -> _Peer:
        from websockets.asyncio.client import connect

        ws = await connect(f"{self.ws_url}?token={token}", compression=None, max_size=2**21, ping_interval=None,
                           open_timeout=OPEN_TIMEOUT_S, close_timeout=5)
        peer = _Peer(role, ident, ws, self, conv)
        peer.task = asyncio.create_task(peer.read())
        return peer

    async def _agents(self):
        return await self.loop.run_in_executor(self.io, self.store.list_agents, self.workspace)

    async def _until_agents_online(self, limit_s: float = 60.0) -> None:
        deadline = time.monotonic() + limit_s
        while True:
            agents = await self._agents()
            if len(agents) == self.n_agents and all(a.presence == "online" and a.connections > 0 for a in agents):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"agents not online after {limit_s:.0f} s: "
                                   f"{[(a.id, a.presence, a.connections) for a in agents]}")
            await asyncio.sleep(0.1)

    async def _server_mean_handle(self) -> float:
        """The mean handle time the router uses for its estimates (kefu.router.Router._handle_times)."""
        from kefu import routing

        stats = await self.loop.run_in_executor(self.io, self.store.handle_stats, self.workspace)
        return round(routing.mean_handle_s(sum(t for t, _ in stats.values()), sum(c for _, c in stats.values())), 3)

    async def _settle(self, quiet_s: float = 1.2, limit_s: float = 30.0) -> None:
        """Wait until the stream poller has stopped invoking stream handlers (it polls every 0.2 s)."""
        if self.counter is None:
            await asyncio.sleep(quiet_s)
            return
        from kefu_local.runtime import STATS

        deadline = time.monotonic() + limit_s
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            seen = sum(v for k, v in STATS.snapshot()["invocations"].items() if k.startswith("stream_"))
            if seen != last:
                last, since = seen, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            await asyncio.sleep(0.2)

    # ------------------------------------------------------------ after the run

    def read_back(self) -> None:
        """Each measured conversation's state in the store: was it queued, when assigned, is it closed."""
        from kefu import wiring

        store = wiring.store()

        def read(conv: _Conversation) -> None:
            conversation_id = conv.conversation_id or store.open_conversation_id(self.workspace, conv.subject)
            if conversation_id:
                conv.server = store.get_conversation(self.workspace, conversation_id)

        measured = [c for c in self.convs.values() if c.phase == "measured"]
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="bench-read") as pool:
            list(pool.map(read, measured))
        self.final_loads = [(a.id, a.load, a.max_concurrent) for a in store.list_agents(self.workspace)]
        self.final_queue = len(store.queue_entries(self.workspace))

    def dump(self, path: str) -> None:
        zero = self.window[0] if self.window else 0.0

        def rel(t: float | None) -> float | None:
            return round(t - zero, 3) if t is not None else None

        with open(path, "w", encoding="utf-8") as out:
            for c in self.convs.values():
                if c.phase != "measured":
                    continue
                server = c.server
                out.write(json.dumps({
                    "customer": c.subject, "conversationId": c.conversation_id, "handle_s": round(c.handle_s, 3),
                    "sent": rel(c.sent), "acked": rel(c.acked), "assigned": rel(c.assigned), "agent": c.agent_id,
                    "routed": rel(c.routed), "close_sent": rel(c.close_sent), "closed": rel(c.closed),
                    "queue_frames": [[rel(t), p, e] for t, p, e in c.queue_frames],
                    "store": None if server is None else {
                        "opened_at": server.opened_at, "queued_at": server.queued_at,
                        "assigned_at": server.assigned_at, "closed_at": server.closed_at, "status": server.status,
                        "close_reason": server.close_reason},
                }) + "\n")

    def report(self, external: bool) -> dict:
        measured = [c for c in self.convs.values() if c.phase == "measured"]
        sent = [c for c in measured if c.sent is not None]
        seats = self.n_agents * self.capacity

        # ---------------------------------------------------------------- who queued
        def was_queued(conv: _Conversation) -> bool:
            if conv.server is not None:
                return bool(getattr(conv.server, "queued_at", None))
            return bool(conv.queue_frames)

        queued = [c for c in measured if was_queued(c)]
        direct = [c for c in measured if not was_queued(c) and c.assigned is not None]
        assign_ms = [(c.assigned - c.sent) * 1000 for c in direct]
        real_wait = [c.assigned - c.sent for c in queued if c.assigned is not None]

        # ---------------------------------------------------------------- wait estimates
        errors, first_errors, signed, first_signed = [], [], [], []
        late = missing = increases = 0
        by_position: dict[str, list[float]] = {}
        for conv in queued:
            previous = None
            for i, (arrived, position, estimate) in enumerate(conv.queue_frames):
                if previous is not None and position > previous:
                    increases += 1
                previous = position
                if conv.assigned is None:
                    continue
                remaining = conv.assigned - arrived
                if remaining < 0:
                    late += 1  # arrived after the agent was told: a stale update
                    continue
                if estimate is None:
                    missing += 1
                    continue
                errors.append(abs(estimate - remaining))
                signed.append(estimate - remaining)
                bucket = _bucket(position)
                by_position.setdefault(bucket, []).append(abs(estimate - remaining))
                if i == 0:
                    first_errors.append(abs(estimate - remaining))
                    first_signed.append(estimate - remaining)
        queue_frames = sum(len(c.queue_frames) for c in measured)

        # ---------------------------------------------------------------- capacity and spread
        sampler = self.sampler
        samples = sampler.samples if sampler else []
        store_violations = [s for s in samples if any(load > cap for _, load, cap in s.loads)]
        spread_at_saturation = sampler.saturation.spread if sampler and sampler.saturation else None
        ramp_end = sampler.saturation.t if sampler and sampler.saturation else None
        if ramp_end is None:  # nobody queued: the ramp is the whole assignment period
            ramp_end = max((c.assigned for c in measured if c.assigned is not None), default=None)
        start = self.window[0] if self.window else None
        ramp = [s for s in samples if start is not None and ramp_end is not None and start <= s.t <= ramp_end]
        final_violations = [a for a in getattr(self, "final_loads", []) if a[1] > a[2] or a[1] < 0]
        capacity_violations = len(self.violations_client) + len(store_violations) + len(self.double_assignments)

        # ---------------------------------------------------------------- requests
        assignments = sum(1 for c in measured if c.assigned is not None)
        requests = None
        if self.requests is not None:
            requests = _requests_report(self.requests, assignments)

        # ---------------------------------------------------------------- unfinished
        unfinished = {
            "not_sent": sum(1 for c in measured if c.sent is None),
            "not_acked": sum(1 for c in sent if c.acked is None),
            "not_assigned": sum(1 for c in sent if c.assigned is None),
            "not_closed": sum(1 for c in sent if c.closed is None),
            "queue_left_in_store": getattr(self, "final_queue", None),
            # ended by the server without an agent (e.g. abandoned: the customer looked gone)
            "closed_unassigned_in_store": dict(Counter(
                c.server.close_reason or "?" for c in measured
                if c.server is not None and c.server.status == "closed" and not c.server.assigned_at)),
        }
        unfinished["examples"] = [
            {"customer": c.subject, "conversationId": c.conversation_id, "acked": c.acked is not None,
             "queue_frames": len(c.queue_frames), "assigned_to": c.agent_id, "close_sent": c.close_sent is not None,
             "store": _server_state(c.server)}
            for c in sent if c.closed is None][:10]

        wall_s = (self.window[1] - self.window[0]) if self.window else None
        # queue order: every conversation has priority 0, so arrival (opened_at), then the id
        ordered = sorted((c for c in queued if c.server is not None and c.server.assigned_at),
                         key=lambda c: (_ms(c.server.opened_at), c.server.id))
        report = {
            "agents": self.n_agents,
            "conversations": self.n,
            "capacity": self.capacity,
            "seats": seats,
            "mean_handle_s": self.mean_handle_s,
            "warmup": self.n_warmup,
            "seed": self.seed,
            "assign_ms": _latency(assign_ms),
            "ack_ms": _latency([(c.acked - c.sent) * 1000 for c in sent if c.acked is not None]),
            "assigned": assignments,
            "closed": sum(1 for c in measured if c.closed is not None),
            "queued": len(queued),
            "queued_with_queue_frame": sum(1 for c in measured if c.queue_frames),
            "wall_s": round(wall_s, 2) if wall_s is not None else None,
            "assignments_per_s": round(assignments / wall_s, 2) if wall_s else None,
            "ddb_requests_per_assignment": requests["per_assignment"] if requests else None,
            "ddb_requests_per_assignment_by_operation": requests["by_operation"] if requests else None,
            "ddb_requests_per_assignment_by_function": requests["by_function"] if requests else None,
            "ddb_requests_per_assignment_by_store_method": requests["by_method"] if requests else None,
            "ddb_requests_total": requests["total"] if requests else None,
            "ddb_failed_requests_per_assignment": requests["failed"] if requests else None,
            "post_to_connection_per_assignment": requests["post_to_connection"] if requests else None,
            "capacity_violations": capacity_violations,
            "capacity_check": {
                "client_view_violations": len(self.violations_client),
                "store_sample_violations": len(store_violations),
                "double_assignments": len(self.double_assignments),
                "store_samples": len(samples),
                "store_sample_interval_s": POLL_INTERVAL_S,
                "agent_peak_held_client_view": max((s.peak for s in self.seats.values()), default=0),
                "assigned_while_own_close_in_flight": self.close_in_flight_overlaps,
                "final_loads_out_of_range": final_violations,
                "examples": (self.violations_client + self.double_assignments
                             + [{"t": round(s.t - start, 3) if start else None, "loads": s.loads}
                                for s in store_violations])[:10],
            },
            "load_spread": spread_at_saturation,
            "load_spread_ramp_max": max((s.spread for s in ramp), default=None),
            "load_spread_ramp_samples": len(ramp),
            "load_at_saturation": sampler.saturation.summary() if sampler and sampler.saturation else None,
            "saturation_after_s": round(sampler.saturation.t - start, 3)
            if sampler and sampler.saturation and start else None,
            "wait_estimate_mae_s": _round(statistics.fmean(errors)) if errors else None,
            "wait_estimate_mae_first_s": _round(statistics.fmean(first_errors)) if first_errors else None,
            "wait_estimate_bias_s": _round(statistics.fmean(signed)) if signed else None,
            "wait_estimate_bias_first_s": _round(statistics.fmean(first_signed)) if first_signed else None,
            "wait_estimate_mae_by_position_s": {k: {"mae": _round(statistics.fmean(v)), "n": len(v)}
                                                for k, v in sorted(by_position.items(), key=lambda kv: _bucket_key(kv[0]))},
            "wait_estimate_examples": _examples(queued),
            "real_wait_s": _latency(real_wait, scale=1, digits=3),
            "queue_frames": queue_frames,
            "keepalive_frames": self.keepalive_frames,
            "queue_frames_scored": len(errors),
            "queue_frames_after_assignment": late,
            "queue_frames_without_estimate": missing,
            "queue_position_increases": increases,
            "queue_order_inversions": _inversions([_ms(c.server.assigned_at) for c in ordered]),
            "server_mean_handle_s": {"before_measured_phase": self.handle_before,
                                     "after_measured_phase": self.handle_after},
            "drawn_handle_s_mean": _round(statistics.fmean(c.handle_s for c in measured)) if measured else None,
            "unfinished": unfinished,
            "errors": self.errors[:20],
            "error_count": len(self.errors),
            "config": {
                "workspace": self.workspace,
                "strategy": "least_busy",
                "timeout_s": self.timeout_s,
                "timed_out": self.timed_out,
                "loads_before_measured_phase": self.loads_before,
                "phase_seconds": {k: round(v, 2) for k, v in self.phase_s.items()},
                "python": platform.python_version(),
                "machine_cores": os.cpu_count(),
                "stack": "external" if external
                else "own LocalStack (moto server child process, gateway + handlers in-process)",
            },
        }
        return report


# ======================================================================== the store's view of the loads


@dataclass
class _Sample:
    t: float
    loads: list[tuple[str, int, int]]  # agent, load, max

    @property
    def spread(self) -> int:
        values = [load for _, load, _ in self.loads]
        return max(values) - min(values) if values else 0

    def summary(self) -> dict:
        values = [load for _, load, _ in self.loads]
        return {"min": min(values), "max": max(values), "total": sum(values),
                "histogram": {str(k): v for k, v in sorted(Counter(values).items())}}


class _LoadSampler:
    """store.list_agents every POLL_INTERVAL_S on a `bench-` thread (not counted as the stack's requests)."""

    def __init__(self, store, workspace: str):
        self.store, self.workspace = store, workspace
        self.samples: list[_Sample] = []
        self.saturation: _Sample | None = None
        self._wake = threading.Event()
        self._want_saturation = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-loads", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def saturation_now(self) -> None:
        """The first customer was told they are queued: read the loads at once."""
        self._want_saturation = True
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            wanted = self._want_saturation and self.saturation is None
            try:
                agents = self.store.list_agents(self.workspace)
            except Exception:  # a sample lost under load is not a result
                agents = None
            if agents is not None:
                sample = _Sample(started, [(a.id, a.load, a.max_concurrent) for a in agents])
                self.samples.append(sample)
                if wanted:
                    self.saturation = sample
            if self._want_saturation and self.saturation is None:
                continue  # asked while this read was under way: read again now
            self._wake.wait(max(0.0, POLL_INTERVAL_S - (time.perf_counter() - started)))
            self._wake.clear()


# ======================================================================== request counting


class _RequestCounter:
    """Every AWS call of this process while started, by thread source, Lambda function and store method.

    Source: "bench" for this benchmark's `bench-*` threads and the main thread (left out of the
    results), else the stack: "handlers" (gateway workers and the fan-out pool), "stream"
    (stream pollers) or "sqs" (queue pollers). The function is the Lambda function whose invocation
    is running on the thread (carried into kefu.delivery's pool by Delivery.map); the method is
    the outermost public method of kefu.adapters.dynamodb's DynamoStore/DynamoMetrics on the stack.
    """

    def __init__(self, runtime):
        self.runtime = runtime
        self.local = threading.local()
        self.counts: Counter = Counter()
        self.active = False
        self._lock = threading.Lock()
        self._restore: list[tuple[object, str, object]] = []

    def install(self) -> None:
        from botocore.client import BaseClient

        from kefu.adapters.dynamodb import DynamoMetrics, DynamoStore
        from kefu.delivery import Delivery

        local, counter = self.local, self

        original_call = BaseClient._make_api_call

        def counted(client, operation_name, api_params):
            if not counter.active:
                return original_call(client, operation_name, api_params)
            key = (_source(threading.current_thread().name), client.meta.service_model.service_name,
                   operation_name, getattr(local, "function", None) or "-", getattr(local, "method", None) or "-")
            outcome = "ok"
            try:
                return original_call(client, operation_name, api_params)
            except Exception as error:  # a lost condition (TransactionCanceled, ConditionalCheckFailed) or a fault
                outcome = getattr(error, "response", {}).get("Error", {}).get("Code") or type(error).__name__
                raise
            finally:
                with counter._lock:
                    counter.counts[key + (outcome,)] += 1

        self._patch(BaseClient, "_make_api_call", counted)

        original_invoke = self.runtime.invoke

        def invoke(name, event):
            previous = getattr(local, "function", None)
            local.function = name
            try:
                return original_invoke(name, event)
            finally:
                local.function = previous

        self.runtime.invoke = invoke  # instance attribute: the gateway and the pollers look it up per call
        self._restore.append((self.runtime, "invoke", None))

        original_map = Delivery.map

        def carried_map(delivery, fn, items):
            function = getattr(local, "function", None)

            def run(item):
                previous = getattr(local, "function", None)
                local.function = function
                try:
                    return fn(item)
                finally:
                    local.function = previous

            return original_map(delivery, run, items)

        self._patch(Delivery, "map", carried_map)

        for cls in (DynamoStore, DynamoMetrics):
            for name, attr in list(vars(cls).items()):
                if name.startswith("_") or not callable(attr) or isinstance(attr, (staticmethod, classmethod)):
                    continue
                self._patch(cls, name, _labelled(attr, f"{cls.__name__}.{name}", local))

    def _patch(self, owner, name: str, replacement) -> None:
        self._restore.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, replacement)

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._restore):
            if original is None:
                owner.__dict__.pop(name, None)
            else:
                setattr(owner, name, original)
        self._restore = []

    def start(self) -> None:
        with self._lock:
            self.counts = Counter()
        self.active = True

    def stop(self) -> Counter:
        self.active = False
        with self._lock:
            counts, self.counts = self.counts, Counter()
        return counts


def _labelled(method, label: str, local):
    def wrapper(*args, **kwargs):
        outer = getattr(local, "method", None)
        if outer is None:
            local.method = label
        try:
            return method(*args, **kwargs)
        finally:
            if outer is None:
                local.method = None

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def _source(thread_name: str) -> str:
    if thread_name.startswith("bench-") or thread_name == "MainThread":
        return "bench"
    if thread_name.startswith("stream-"):
        return "stream"
    if thread_name.startswith("sqs-"):
        return "sqs"
    return "handlers"  # the gateway's "lambda_N" threads and kefu.delivery's pool


def _requests_report(counts: Counter, assignments: int) -> dict:
    stack = Counter({k: v for k, v in counts.items() if k[0] != "bench"})
    ddb = Counter({k: v for k, v in stack.items() if k[1] == "dynamodb"})
    total = sum(ddb.values())
    n = max(assignments, 1)

    def per(group) -> dict:
        grouped: Counter = Counter()
        for key, v in ddb.items():
            grouped[group(key)] += v
        return {k: round(v / n, 2) for k, v in sorted(grouped.items(), key=lambda kv: -kv[1])}

    return {
        "total": total,
        "per_assignment": round(total / n, 2),
        "by_operation": per(lambda k: k[2]),
        "by_function": per(lambda k: k[3] if k[3] != "-" else f"({k[0]} thread, no invocation)"),
        "by_method": per(lambda k: k[4].split(".", 1)[-1] if k[4] != "-" else "(not a store method)"),
        "post_to_connection": round(sum(v for k, v in stack.items() if k[2] == "PostToConnection") / n, 2),
        "failed": {f"{method} {op}: {outcome}": round(v / n, 2) for (method, op, outcome), v in sorted(
            _group(ddb, lambda k: (k[4].split(".", 1)[-1], k[2], k[5])).items(), key=lambda kv: -kv[1])
            if outcome != "ok"},
    }


def _group(counts: Counter, key) -> Counter:
    grouped: Counter = Counter()
    for k, v in counts.items():
        grouped[key(k)] += v
    return grouped


# ======================================================================== helpers


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _latency(values: list[float], scale: float = 1.0, digits: int = 1) -> dict:
    if not values:
        return {"p50": None, "p99": None, "mean": None, "max": None, "n": 0}
    return {"p50": round(_pct(values, 0.5) * scale, digits), "p99": round(_pct(values, 0.99) * scale, digits),
            "mean": round(statistics.fmean(values) * scale, digits), "max": round(max(values) * scale, digits),
            "n": len(values)}


def _round(value: float, digits: int = 2) -> float:
    return round(value, digits)


def _bucket(position: int) -> str:
    if position <= 10:
        return "1-10"
    if position <= 50:
        return "11-50"
    if position <= 100:
        return "51-100"
    if position <= 200:
        return "101-200"
    return ">200"


def _bucket_key(bucket: str) -> int:
    return int(re.sub(r"\D.*", "", bucket.lstrip(">")) or 0)


def _examples(queued: list[_Conversation]) -> list[dict]:
    """A few customers across the queue: their first estimate and the wait that followed."""
    scored = [c for c in queued if c.queue_frames and c.assigned is not None]
    scored.sort(key=lambda c: c.queue_frames[0][1])
    if not scored:
        return []
    picks = {scored[round(i * (len(scored) - 1) / 4)].subject: None for i in range(5)}
    out = []
    for c in scored:
        if c.subject in picks:
            arrived, position, estimate = c.queue_frames[0]
            out.append({"first_position": position, "first_estimate_s": estimate,
                        "real_remaining_s": round(c.assigned - arrived, 2), "queue_frames": len(c.queue_frames)})
    return out


def _inversions(sequence: list[int]) -> int:
    """Pairs assigned in the opposite order of their queue order (concurrent drains make a few normal)."""
    count = 0
    for i in range(len(sequence)):
        for j in range(i + 1, len(sequence)):
            if sequence[j] < sequence[i]:
                count += 1
    return count


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)  # "…Z": an aware UTC time (Python 3.11+)


def _server_state(conversation) -> dict | None:
    if conversation is None:
        return None
    return {"status": conversation.status, "agent": conversation.agent_id, "queued_at": conversation.queued_at,
            "assigned_at": conversation.assigned_at, "closed_at": conversation.closed_at,
            "close_reason": conversation.close_reason, "queue_key": conversation.queue_key}
