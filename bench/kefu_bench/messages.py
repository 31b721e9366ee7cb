"""Message-path benchmark (issue 2): latency, DynamoDB requests, handler CPU, cold imports and cost.

`kefu bench messages --conversations 20 --messages 20` prints run()'s result as JSON.

What it does, in one process (the local stack's gateway and handlers run in-process, moto in
a child process):

1. starts a LocalStack (port 0, demo seed), adds enough bench agents for every conversation,
   connects one WebSocket per agent and runs one warm-up conversation;
2. phase "connect": one customer WebSocket per conversation;
3. phase "open": each customer's first message (opens the conversation, routes it to the least
   busy agent, who gets "assigned"); not the steady path, measured on its own;
4. phase "steady": `messages` more messages per conversation, with conversationId, one at a
   time per conversation, at most CONCURRENCY in flight; end-to-end latency is customer send ->
   the assigned agent's socket receiving the message frame. Raw PutItem round trips to the same
   moto are sampled by a thread during this phase (and again, idle, at the end);
5. phase "unloaded": one conversation, one message at a time, each followed by one PutItem;
6. phase "disconnect": the customers hang up;
7. stops the stack, then times the cold import of every handler and of bare boto3 in fresh
   interpreters.

STATS (kefu_local.runtime) is reset at the start of every phase and read at its end, after the
stream poller has gone quiet, so each phase's requests and CPU are its own. On top of STATS the
benchmark records, per request, enough to estimate DynamoDB capacity units (item sizes, items per
transaction, index membership) and, per invocation, CPU and wall time; both are recorded
outside the handlers' CPU accounting and processed after the phase.

Call run() in a fresh process (the CLI does): the local stack binds PynamoDB's models and
kefu.wiring's cached adapters to the first endpoint a process sees.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

# List prices, us-east-1, on-demand, arm64 (USD per unit, read 2026). Every cost below comes from here.
PRICES = {
    # Amazon API Gateway pricing, WebSocket APIs: "$1.00 per million messages" (first billion),
    # metered in 32 KB increments, both directions -- https://aws.amazon.com/api-gateway/pricing/
    "apigw_ws_message": 1.00 / 1_000_000,
    # same page: "$0.25 per million connection minutes"
    "apigw_ws_connection_minute": 0.25 / 1_000_000,
    # AWS Lambda pricing: "$0.20 per 1M requests" -- https://aws.amazon.com/lambda/pricing/
    "lambda_request": 0.20 / 1_000_000,
    # same page, Arm price, first 7.5 billion GB-seconds/month: "$0.0000133334 for every GB-second",
    # duration billed in 1 ms increments
    "lambda_arm64_gb_second": 0.0000133334,
    # Amazon DynamoDB on-demand pricing, Standard table class: "$0.625 per million write request units"
    # -- https://aws.amazon.com/dynamodb/pricing/on-demand/
    "dynamodb_wru": 0.625 / 1_000_000,
    # same page: "$0.125 per million read request units"
    "dynamodb_rru": 0.125 / 1_000_000,
    # AWS Secrets Manager pricing: "$0.05 per 10,000 API calls" -- https://aws.amazon.com/secrets-manager/pricing/
    "secretsmanager_api_call": 0.05 / 10_000,
    # Amazon Connect pricing, chat: "$0.004 per message" -- https://aws.amazon.com/connect/pricing/
    "amazon_connect_chat_message": 0.004,
}

WORKSPACE = "demo"
CONCURRENCY = 8  # messages in flight at once (a 2-core machine runs client, gateway, handlers and moto)
AGENT_SEATS = 10  # max_concurrent of each bench agent
TIMEOUT_S = 30.0
PUTITEM_INTERVAL_S = 0.010  # pause between interleaved PutItem samples
PUTITEM_IDLE_SAMPLES = 300
UNLOADED_MESSAGES = 50
SCRATCH_TABLE = "kefu-bench-putitem"
COLD_IMPORT_RUNS = 3
# the cost model: a conversation of 20 messages kept open 10 minutes on 2 connections
COST_MESSAGES = 20
COST_CONNECTIONS = 2
COST_CONNECTION_MINUTES = 10
TEXT = "您好，我的订单 #20391 还没有到，物流显示三天前就已经发货了，能帮我查一下吗？ Thanks!"


# ======================================================================== entry point


def run(conversations: int, messages: int, url: str | None = None) -> dict:
    """Run the benchmark and return its report (a JSON-serialisable dict).

    url: the base URL of a stack that is already running (`kefu dev`, e.g. http://127.0.0.1:8000);
    AWS_ENDPOINT_URL must then name its DynamoDB (moto) endpoint. Without it, run() starts its own
    LocalStack and stops it at the end. Against an external stack the capacity units are estimated
    from operation counts only, and invocation-level timings are not available.
    """
    if conversations < 1 or messages < 1:
        raise ValueError("conversations and messages must be at least 1")
    from kefu import schema, tokens

    from kefu_local import config

    stack = None
    accountant: _Accountant | None = None
    invocations: _InvocationLog | None = None
    try:
        if url is None:
            from kefu_local.stack import LocalStack

            stack = LocalStack(port=0, seed=True).start()
            base_url, ws_url = stack.base_url, stack.ws_url
            dynamodb = stack.client("dynamodb")
            accountant = _Accountant(schema)
            accountant.install()
            invocations = _InvocationLog(stack.gateway.runtime)
            stats = _LocalStats()
        else:
            base_url = url.rstrip("/")
            ws_url = re.sub(r"^http", "ws", base_url) + "/ws"
            endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
            if not endpoint:
                raise RuntimeError("with url=..., set AWS_ENDPOINT_URL to the stack's DynamoDB endpoint")
            from kefu_local.services import LOCAL_CREDENTIALS

            for key, value in LOCAL_CREDENTIALS.items():
                os.environ.setdefault(key, value)
            import boto3

            dynamodb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=os.environ["AWS_REGION"])
            stats = _HttpStats(base_url)

        key = config.signing_key()
        agent_ids = _add_agents(conversations, secrets.token_hex(2))
        _create_scratch_table(dynamodb)
        meter = _Meter(stats, accountant, invocations, stack.moto.proc.pid if stack is not None else None)
        sampler = _PutItemSampler(dynamodb)
        clients = asyncio.run(
            _drive(ws_url, key, tokens, agent_ids, conversations, messages, meter, sampler)
        )
        if stack is not None:  # idle means idle: the stream pollers' GetRecords compete for moto too
            for poller in stack.pollers:
                poller.stop()
            for poller in stack.pollers:
                poller.join(5)
        idle = sampler.idle_samples(PUTITEM_IDLE_SAMPLES)
    finally:
        if accountant is not None:
            accountant.uninstall()
        if invocations is not None:
            invocations.uninstall()
        if stack is not None:
            stack.stop()

    cold = cold_imports(COLD_IMPORT_RUNS)
    return _report(conversations, messages, len(agent_ids), clients, meter, sampler.samples, idle, cold,
                   external=url is not None)


# ======================================================================== the clients


def _add_agents(conversations: int, run_id: str) -> list[str]:
    """Enough seats for every conversation (the demo seed has 12), one WebSocket per agent later."""
    from kefu import wiring
    from kefu.models import Agent

    count = math.ceil(conversations / AGENT_SEATS) + 1  # one spare agent: seats never run out
    store = wiring.store()
    ids = []
    for i in range(count):
        ids.append(f"bench-agent-{run_id}-{i}")  # fresh ids: a rerun against a running stack starts at load 0
        store.put_agent(Agent(WORKSPACE, ids[-1], f"Bench {i}", max_concurrent=AGENT_SEATS))
    return ids


class _Peer:
    """One WebSocket: counts frames both ways (each is an API Gateway message) and dispatches what arrives."""

    def __init__(self, role: str, ident: str, ws, clients: _Clients):
        self.role, self.id, self.ws, self.clients = role, ident, ws, clients
        self.task: asyncio.Task | None = None

    async def send(self, frame: dict) -> None:
        self.clients.meter.frames_out += 1
        await self.ws.send(json.dumps(frame, ensure_ascii=False, separators=(",", ":")))

    async def read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self.ws:
                arrived = time.perf_counter()
                self.clients.meter.frames_in += 1
                self.clients.on_frame(self, json.loads(raw), arrived)
        except ConnectionClosed:
            pass


class _Clients:
    def __init__(self, meter: _Meter):
        self.meter = meter
        self.loop = asyncio.get_running_loop()
        self.slots: dict[tuple, asyncio.Future] = {}
        self.errors: list[str] = []
        self.agent_of: dict[str, str] = {}  # conversationId -> assigned agent
        self.delivered_to: dict[str, str] = {}  # clientMessageId -> agent whose socket got it
        self.e2e_ms: list[float] = []
        self.ack_ms: list[float] = []
        self.open_e2e_ms: list[float] = []
        self.unloaded_e2e_ms: list[float] = []
        self.unloaded_putitem_ms: list[float] = []
        self.phase_seconds: dict[str, float] = {}

    def slot(self, *key) -> asyncio.Future:
        future = self.slots.get(key)
        if future is None:
            future = self.slots[key] = self.loop.create_future()
        return future

    def on_frame(self, peer: _Peer, frame: dict, arrived: float) -> None:
        kind = frame.get("type")
        if peer.role == "customer":
            if kind == "ack":
                _resolve(self.slot("ack", frame.get("clientMessageId")), frame)
            elif kind == "error":
                error = RuntimeError(f"error frame: {frame}")
                self.errors.append(str(frame)[:300])
                if frame.get("clientMessageId"):
                    _fail(self.slot("ack", frame["clientMessageId"]), error)
            elif kind == "routing" or (kind is None and "message" in frame):
                self.errors.append(str(frame)[:300])  # no agent available / "Internal server error"
        else:
            if kind == "message" and (frame.get("sender") or {}).get("role") == "customer":
                cmid = frame.get("clientMessageId")
                self.delivered_to[cmid] = peer.id
                _resolve(self.slot("delivered", cmid), arrived)
            elif kind == "assigned":
                self.agent_of[frame["conversationId"]] = peer.id
                _resolve(self.slot("assigned", frame["conversationId"]), arrived)
            elif kind == "error" or (kind is None and "message" in frame):
                self.errors.append(str(frame)[:300])

    def forget(self, *key) -> None:
        self.slots.pop(key, None)


def _resolve(future: asyncio.Future, value) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future, error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


async def _open_socket(clients: _Clients, ws_url: str, token: str, role: str, ident: str) -> _Peer:
    from websockets.asyncio.client import connect

    # compression off: API Gateway WebSocket APIs do not negotiate permessage-deflate
    ws = await connect(f"{ws_url}?token={token}", compression=None, max_size=2**21, ping_interval=None,
                       open_timeout=TIMEOUT_S, close_timeout=5)
    peer = _Peer(role, ident, ws, clients)
    peer.task = asyncio.create_task(peer.read())
    return peer


async def _drive(ws_url, key, tokens, agent_ids, conversations, messages, meter, sampler) -> _Clients:
    clients = _Clients(meter)
    gate = asyncio.Semaphore(CONCURRENCY)
    run_id = secrets.token_hex(3)
    agents: list[_Peer] = []
    customers: list[_Peer] = []
    conversation_ids: list[str] = [""] * conversations
    try:
        for agent_id in agent_ids:
            token = tokens.issue(key, kind="agent", workspace=WORKSPACE, subject=agent_id)
            agents.append(await _open_socket(clients, ws_url, token, "agent", agent_id))
        await _warm_up(clients, ws_url, key, tokens, run_id, meter)

        # -------------------------------------------------------------- connect
        async def connect_customer(i: int) -> _Peer:
            subject = f"bench-{run_id}-c{i}"
            token = tokens.issue(key, kind="visitor", workspace=WORKSPACE, subject=subject, name=f"Customer {i}")
            async with gate:
                return await _open_socket(clients, ws_url, token, "customer", subject)

        await meter.begin("connect")
        started = time.perf_counter()
        customers.extend(await asyncio.gather(*(connect_customer(i) for i in range(conversations))))
        clients.phase_seconds["connect"] = time.perf_counter() - started
        await meter.end(events=conversations)

        # -------------------------------------------------------------- open
        async def open_conversation(i: int) -> None:
            cmid = f"{run_id}-{i}-0"
            async with gate:
                sent = time.perf_counter()
                await customers[i].send({"action": "message", "clientMessageId": cmid, "text": TEXT})
                ack = await asyncio.wait_for(clients.slot("ack", cmid), TIMEOUT_S)
                conversation_ids[i] = ack["conversationId"]
                assigned = await asyncio.wait_for(clients.slot("assigned", ack["conversationId"]), TIMEOUT_S)
            clients.open_e2e_ms.append((assigned - sent) * 1000)
            clients.forget("ack", cmid)

        await meter.begin("open")
        started = time.perf_counter()
        await asyncio.gather(*(open_conversation(i) for i in range(conversations)))
        clients.phase_seconds["open"] = time.perf_counter() - started
        await meter.end(events=conversations)

        # -------------------------------------------------------------- steady
        async def converse(i: int) -> None:
            conversation_id = conversation_ids[i]
            for k in range(1, messages + 1):
                cmid = f"{run_id}-{i}-{k}"
                frame = {"action": "message", "conversationId": conversation_id, "clientMessageId": cmid,
                         "text": f"{TEXT} ({k})"}
                async with gate:
                    sent = time.perf_counter()
                    await customers[i].send(frame)
                    await asyncio.wait_for(clients.slot("ack", cmid), TIMEOUT_S)
                    acked = time.perf_counter()
                    delivered = await asyncio.wait_for(clients.slot("delivered", cmid), TIMEOUT_S)
                clients.e2e_ms.append((delivered - sent) * 1000)
                clients.ack_ms.append((acked - sent) * 1000)
                if clients.delivered_to.get(cmid) != clients.agent_of.get(conversation_id):
                    clients.errors.append(f"{cmid} reached {clients.delivered_to.get(cmid)}, not the assigned agent")
                clients.forget("ack", cmid)
                clients.forget("delivered", cmid)

        await meter.begin("steady")
        sampler.start()
        started = time.perf_counter()
        try:
            await asyncio.gather(*(converse(i) for i in range(conversations)))
        finally:
            clients.phase_seconds["steady"] = time.perf_counter() - started
            sampler.stop()
        await meter.end(events=conversations * messages)

        # -------------------------------------------------------------- unloaded
        # one conversation, one message at a time, a PutItem after each: the path's own latency
        # next to the database's when the machine is not saturated
        await meter.begin("unloaded")
        conversation_id = conversation_ids[0]
        for k in range(UNLOADED_MESSAGES):
            cmid = f"{run_id}-0-u{k}"
            sent = time.perf_counter()
            await customers[0].send({"action": "message", "conversationId": conversation_id, "clientMessageId": cmid,
                                     "text": TEXT})
            await asyncio.wait_for(clients.slot("ack", cmid), TIMEOUT_S)
            delivered = await asyncio.wait_for(clients.slot("delivered", cmid), TIMEOUT_S)
            clients.unloaded_e2e_ms.append((delivered - sent) * 1000)
            clients.unloaded_putitem_ms.append(await asyncio.to_thread(sampler.put_once))
        await meter.end(events=UNLOADED_MESSAGES)

        # -------------------------------------------------------------- disconnect
        await meter.begin("disconnect")
        await asyncio.gather(*(c.ws.close() for c in customers))
        await meter.wait_for_invocations("ws_disconnect", conversations)
        await meter.end(events=conversations)
    finally:
        for peer in agents + customers:
            await peer.ws.close()
            if peer.task is not None:
                peer.task.cancel()
    return clients


async def _warm_up(clients: _Clients, ws_url: str, key: str, tokens, run_id: str, meter: _Meter) -> None:
    """One conversation before the measured phases, so that they see warm functions, as a busy stack would.

    The first invocation of a function creates its botocore clients and fills lazy caches (tens of ms of
    CPU); that is the cold start's business (see cold_import_ms), not the per-message cost.
    """
    subject = f"bench-{run_id}-warm"
    token = tokens.issue(key, kind="visitor", workspace=WORKSPACE, subject=subject, name="Warm-up")
    customer = await _open_socket(clients, ws_url, token, "customer", subject)
    try:
        cmid = f"{run_id}-warm-0"
        await customer.send({"action": "message", "clientMessageId": cmid, "text": TEXT})
        ack = await asyncio.wait_for(clients.slot("ack", cmid), TIMEOUT_S)
        await asyncio.wait_for(clients.slot("assigned", ack["conversationId"]), TIMEOUT_S)
        for k in range(1, 4):
            cmid = f"{run_id}-warm-{k}"
            await customer.send({"action": "message", "conversationId": ack["conversationId"],
                                 "clientMessageId": cmid, "text": TEXT})
            await asyncio.wait_for(clients.slot("ack", cmid), TIMEOUT_S)
            await asyncio.wait_for(clients.slot("delivered", cmid), TIMEOUT_S)
    finally:
        await customer.ws.close()
        customer.task.cancel()
    await meter.wait_for_invocations("ws_disconnect", 1)


# ======================================================================== measurement


class _LocalStats:
    """kefu_local.runtime.STATS of this process."""

    def reset(self) -> None:
        from kefu_local.runtime import STATS

        STATS.reset()

    def snapshot(self) -> dict:
        from kefu_local.runtime import STATS

        return STATS.snapshot()


class _HttpStats:
    """The same numbers from a running stack, GET {base}/_local/stats[?reset=1]."""

    def __init__(self, base_url: str):
        self.url = base_url + "/_local/stats"

    def reset(self) -> None:
        urllib.request.urlopen(self.url + "?reset=1", timeout=10).close()

    def snapshot(self) -> dict:
        with urllib.request.urlopen(self.url, timeout=10) as response:
            return json.loads(response.read())


class _Meter:
    """Phase boundaries: resets and reads STATS, the accountant, the invocation log, the frame counts."""

    def __init__(self, stats, accountant: _Accountant | None, invocations: _InvocationLog | None,
                 moto_pid: int | None = None):
        self.stats, self.accountant, self.invocations = stats, accountant, invocations
        self.moto_pid = moto_pid
        self.phases: dict[str, dict] = {}
        self.current = ""
        self.frames_in = self.frames_out = 0
        self._cpu_start: tuple[float, float | None] = (0.0, None)

    def _cpu(self) -> tuple[float, float | None]:
        """CPU seconds so far of this process (client, gateway, handlers) and of the moto server."""
        return time.process_time(), _process_cpu_s(self.moto_pid) if self.moto_pid else None

    async def begin(self, name: str) -> None:
        await self._settle()  # leftovers of the previous phase (stream records) are not this phase's
        await asyncio.to_thread(self.stats.reset)
        if self.accountant is not None:
            self.accountant.reset()
        if self.invocations is not None:
            self.invocations.reset()
        self.frames_in = self.frames_out = 0
        self.current = name
        self._cpu_start = self._cpu()

    async def end(self, events: int) -> None:
        cpu = self._cpu()  # before settling: the waiting is not the phase's work
        await self._settle()
        snapshot = await asyncio.to_thread(self.stats.snapshot)
        phase = {
            "cpu_s": {"bench_process": cpu[0] - self._cpu_start[0],
                      "moto": cpu[1] - self._cpu_start[1] if cpu[1] is not None else None},
            "events": events,
            "stats": snapshot,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "ddb": self.accountant.summary() if self.accountant is not None else None,
            "invocations": self.invocations.take() if self.invocations is not None else None,
        }
        self.phases[self.current] = phase

    async def _settle(self, quiet_s: float = 1.2, limit_s: float = 20.0) -> None:
        """Wait until the stream poller has stopped invoking stream handlers (it polls every 0.2 s)."""
        deadline = time.monotonic() + limit_s
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            snapshot = await asyncio.to_thread(self.stats.snapshot)
            seen = sum(v for k, v in snapshot["invocations"].items() if k.startswith("stream_"))
            if seen != last:
                last, since = seen, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            await asyncio.sleep(0.2)

    async def wait_for_invocations(self, function: str, count: int, limit_s: float = TIMEOUT_S) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            snapshot = await asyncio.to_thread(self.stats.snapshot)
            if snapshot["invocations"].get(function, 0) >= count:
                return
            await asyncio.sleep(0.1)


def _process_cpu_s(pid: int) -> float | None:
    """utime + stime of a process, from /proc (Linux); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _InvocationLog:
    """Per-invocation thread CPU and wall time, by wrapping the runtime's invoke (outside its own CPU window)."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.records: list[tuple[str, float, float]] = []
        original = runtime.invoke

        def invoke(name, event):
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return original(name, event)
            finally:
                self.records.append((name, (time.thread_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000))

        runtime.invoke = invoke  # instance attribute: the gateway and the stream pollers look it up per call

    def reset(self) -> None:
        self.records = []

    def take(self) -> dict[str, list[tuple[float, float]]]:
        by_function: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for name, cpu, wall in self.records:
            by_function[name].append((cpu, wall))
        return dict(by_function)

    def uninstall(self) -> None:
        self.runtime.__dict__.pop("invoke", None)


class _PutItemSampler:
    """Raw PutItem round trips to the same moto server, from a thread of this process."""

    def __init__(self, dynamodb):
        self.dynamodb = dynamodb
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._n = 0

    def put_once(self) -> float:
        return self._put()

    def _put(self) -> float:
        self._n += 1
        item = {"pk": {"S": f"bench#{self._n % 500}"}, "text": {"S": TEXT}, "n": {"N": str(self._n)}}
        started = time.perf_counter()
        self.dynamodb.put_item(TableName=SCRATCH_TABLE, Item=item)
        return (time.perf_counter() - started) * 1000

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                self.samples.append(self._put())
                self._stop.wait(PUTITEM_INTERVAL_S)

        self._thread = threading.Thread(target=loop, name="bench-putitem", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def idle_samples(self, n: int) -> list[float]:
        return [self._put() for _ in range(n)]


def _create_scratch_table(dynamodb) -> None:
    try:
        dynamodb.create_table(
            TableName=SCRATCH_TABLE, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        )
    except dynamodb.exceptions.ResourceInUseException:
        pass


# ------------------------------------------------------------------------ capacity units


class _Accountant:
    """Every AWS call of this process, by source thread, kept raw and turned into capacity units later.

    Units (on-demand): GetItem/Query 0.5 RRU per 4 KB read (1 if ConsistentRead), at least one
    unit per request; PutItem/UpdateItem/DeleteItem 1 WRU per 1 KB of item (updates and deletes
    taken as <= 1 KB); TransactWriteItems 2 WRU per item and KB, ConditionCheck included;
    plus 1 WRU per global secondary index an item write touches (all indexes project ALL, so an
    update of an indexed item rewrites its index entries), not doubled inside transactions.
    """

    def __init__(self, schema):
        self.tables = {t.local_name: t for t in schema.TABLES.values()}
        self.index_attrs = {
            name: [(i.name, {i.partition_key.name} | ({i.sort_key.name} if i.sort_key else set())) for i in t.indexes]
            for name, t in self.tables.items()
        }
        self.records: list[tuple] = []
        self.present: dict[tuple, frozenset] = {}  # (table, pk, sk) -> index-key attributes the item has
        self._restore = None

    def install(self) -> None:
        from botocore.client import BaseClient

        original = BaseClient._make_api_call

        def accounted(client, operation_name, api_params):
            source = _source(threading.current_thread().name)
            result = None
            started = time.perf_counter()
            try:
                result = original(client, operation_name, api_params)
                return result
            finally:  # raw only: the units are worked out after the phase, outside the handlers' CPU time
                elapsed = (time.perf_counter() - started) * 1000
                self.records.append((source, client.meta.service_model.service_name, operation_name, api_params,
                                     result, elapsed))

        BaseClient._make_api_call = accounted
        self._restore = (BaseClient, original)

    def uninstall(self) -> None:
        if self._restore is not None:
            cls, original = self._restore
            cls._make_api_call = original
            self._restore = None

    def reset(self) -> None:
        self.summary()  # keep index membership up to date, forget the counts
        self.records.clear()

    def summary(self) -> dict:
        """{"requests": {source: {op: n}}, "units": {source: {rru, wru, gsi_wru}}, "tx_items": {source: n}}"""
        records, self.records = self.records, []  # a swap: appends from other threads land in one or the other
        requests: dict[str, Counter] = defaultdict(Counter)
        units: dict[str, Counter] = defaultdict(Counter)
        tx_items: Counter = Counter()
        latency: dict[str, list[float]] = defaultdict(list)
        for source, service, op, params, result, elapsed in records:
            requests[source][f"{service}.{op}"] += 1
            latency[f"{source}:{service}.{op}"].append(elapsed)
            if service != "dynamodb":
                continue
            rru, wru, gsi, items = self._units(op, params, result)
            units[source]["rru"] += rru
            units[source]["wru"] += wru
            units[source]["gsi_wru"] += gsi
            tx_items[source] += items
        return {
            "requests": {s: dict(c) for s, c in requests.items()},
            "units": {s: dict(c) for s, c in units.items()},
            "tx_items": dict(tx_items),
            "latency_ms": dict(latency),
        }

    def _units(self, op: str, params: dict, result) -> tuple[float, float, float, int]:
        factor = 1.0 if params.get("ConsistentRead") else 0.5
        if op == "GetItem":
            size = _item_size((result or {}).get("Item") or {})
            return factor * max(1, math.ceil(size / 4096)), 0, 0, 0
        if op in ("Query", "Scan"):
            size = sum(_item_size(i) for i in (result or {}).get("Items") or [])
            return factor * max(1, math.ceil(size / 4096)), 0, 0, 0
        if op == "BatchGetItem":
            sizes = [_item_size(i) for items in ((result or {}).get("Responses") or {}).values() for i in items]
            return sum(0.5 * max(1, math.ceil(s / 4096)) for s in sizes), 0, 0, 0
        if op == "TransactGetItems":
            sizes = [_item_size(r.get("Item") or {}) for r in (result or {}).get("Responses") or []]
            return sum(2 * max(1, math.ceil(s / 4096)) for s in sizes), 0, 0, 0
        done = result is not None
        if op in ("PutItem", "UpdateItem", "DeleteItem"):
            wru, gsi = self._write(op[:-4], params, done)
            return 0, wru, gsi, 0
        if op == "BatchWriteItem":
            wru = gsi = 0.0
            for table, requests in params.get("RequestItems", {}).items():
                for request in requests:
                    kind, body = next(iter(request.items()))
                    w, g = self._write("Put" if kind == "PutRequest" else "Delete", {"TableName": table, **body}, done)
                    wru, gsi = wru + w, gsi + g
            return 0, wru, gsi, 0
        if op == "TransactWriteItems":
            wru = gsi = 0.0
            items = params.get("TransactItems") or []
            for entry in items:
                kind, body = next(iter(entry.items()))
                w, g = self._write(kind, body, done)
                wru, gsi = wru + 2 * w, gsi + g
            return 0, wru, gsi, len(items)
        return 0, 0, 0, 0  # DescribeTable, CreateTable, ...: not metered per request

    def _write(self, kind: str, body: dict, done: bool) -> tuple[float, float]:
        """(WRU of the table write, WRU of index writes) of one Put/Update/Delete/ConditionCheck."""
        if kind == "ConditionCheck":
            return 1, 0
        table = body.get("TableName", "")
        indexes = self.index_attrs.get(table, [])
        key_attrs = (body.get("Item") if kind == "Put" else body.get("Key")) or {}
        key = (table, *(_scalar(key_attrs.get(k)) for k in ("pk", "sk")))
        before = self.present.get(key, frozenset())
        if kind == "Put":
            item = body.get("Item") or {}
            units = max(1, math.ceil(_item_size(item) / 1024))
            after = frozenset(a for _, attrs in indexes for a in attrs if a in item)
        elif kind == "Update":
            units = 1
            set_attrs, removed = _update_targets(body.get("UpdateExpression", ""),
                                                 body.get("ExpressionAttributeNames") or {})
            after = frozenset((set(before) | set_attrs) - removed) & frozenset(a for _, attrs in indexes for a in attrs)
        else:  # Delete
            units, after = 1, frozenset()
        gsi = sum(units for _, attrs in indexes if attrs <= before or attrs <= after)
        if done:
            self.present[key] = after
        return units, gsi


def _source(thread_name: str) -> str:
    if thread_name.startswith("stream-"):
        return "stream"
    if thread_name.startswith(("bench-", "asyncio_")) or thread_name == "MainThread":
        return "bench"
    return "handlers"  # the gateway's "lambda_N" threads and the fan-out pools they use


def _scalar(value) -> str | None:
    return next(iter(value.values())) if isinstance(value, dict) and value else None


_CLAUSE = re.compile(r"\b(SET|REMOVE|ADD|DELETE)\b", re.IGNORECASE)


def _update_targets(expression: str, names: dict) -> tuple[set, set]:
    """Attribute names an UpdateExpression sets (SET/ADD) and removes (REMOVE/DELETE)."""
    parts = _CLAUSE.split(expression)
    written, removed = set(), set()
    for keyword, body in zip(parts[1::2], parts[2::2]):
        depth, start, actions = 0, 0, []
        for i, ch in enumerate(body):
            depth += ch == "("
            depth -= ch == ")"
            if ch == "," and depth == 0:
                actions.append(body[start:i])
                start = i + 1
        actions.append(body[start:])
        for action in actions:
            target = re.split(r"[\s=.\[]", action.strip(), maxsplit=1)[0]
            if not target:
                continue
            name = names.get(target, target)
            (removed if keyword.upper() in ("REMOVE",) else written).add(name)
    return written, removed


def _value_size(value: dict) -> int:
    kind, v = next(iter(value.items()))
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return (len(str(v).lstrip("-").replace(".", "")) + 1) // 2 + 1
    if kind == "B":
        return len(v)
    if kind == "SS":
        return sum(len(s.encode()) for s in v)
    if kind == "NS":
        return sum((len(str(n).lstrip("-").replace(".", "")) + 1) // 2 + 1 for n in v)
    if kind == "BS":
        return sum(len(b) for b in v)
    if kind == "L":
        return 3 + sum(1 + _value_size(e) for e in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + _value_size(e) for k, e in v.items())
    return 1  # BOOL, NULL


def _item_size(item: dict) -> int:
    return sum(len(k.encode()) + _value_size(v) for k, v in item.items())


# ======================================================================== cold imports

_CHILD = r"""
import importlib, json, sys, time
target, function_dir, layer_dir, probe = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
hidden, missed = frozenset(json.loads(sys.argv[5])), []

class NotInLayer:
    # packages installed here for the local stack and tests but absent from the Lambda layer
    @staticmethod
    def find_spec(name, path=None, target=None):
        top = name.partition(".")[0]
        if top in hidden:
            missed.append(top)
            raise ModuleNotFoundError(f"No module named {top!r}", name=top)
        return None

sys.meta_path.insert(0, NotInLayer)
network = []
if probe:
    def hook(event, args):
        if event.startswith("socket.") and event in ("socket.connect", "socket.getaddrinfo", "socket.sendto",
                                                      "socket.sendmsg", "socket.gethostbyname"):
            network.append([event, repr(args[1:] if event == "socket.connect" else args)[:160]])
    sys.addaudithook(hook)
if target != "boto3":
    sys.path[:0] = [function_dir, layer_dir]   # LAMBDA_TASK_ROOT, then the layer (/opt/python)
started, cpu = time.perf_counter(), time.process_time()
importlib.import_module("boto3" if target == "boto3" else "handler")
elapsed, cpu = (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000
print(json.dumps({"ms": elapsed, "cpu_ms": cpu, "network": network, "modules": len(sys.modules),
                  "hidden": sorted(set(missed))}))
"""


def _layer_packages() -> tuple[list[str], list[str]]:
    """(distributions of the Lambda dependencies layer, top-level modules of every other installed distribution).

    The layer is requirements.txt and its dependencies, markers evaluated for the Lambda runtime
    (Python 3.13, Linux arm64) and extras left out; this venv also holds moto, cryptography and the
    like, which some layer packages import when present (PyJWT: cryptography, PynamoDB: blinker).
    """
    import importlib.metadata as metadata

    from kefu_local import config

    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - packaging comes with pip/setuptools
        Requirement = None

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    environment = {"python_version": "3.13", "python_full_version": "3.13.0", "sys_platform": "linux",
                   "platform_system": "Linux", "platform_machine": "aarch64", "os_name": "posix",
                   "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
    pending = []
    for line in (config.ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            pending.append(re.split(r"[\s<>=!~;\[]", line, maxsplit=1)[0])
    closure: set[str] = {"kefu"}
    while pending:
        name = norm(pending.pop())
        if name in closure:
            continue
        closure.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for spec in requires:
            if Requirement is not None:
                requirement = Requirement(spec)
                if requirement.marker is not None and not requirement.marker.evaluate(environment):
                    continue
                pending.append(requirement.name)
            elif "extra" not in spec:
                pending.append(re.split(r"[\s<>=!~;(\[]", spec.strip(), maxsplit=1)[0])
    hidden = sorted(
        top for top, dists in metadata.packages_distributions().items()
        if not any(norm(d) in closure for d in dists) and not top.startswith("_")
    ) + ["kefu_local", "kefu_bench"]
    return sorted(closure), hidden


def _lambda_env(function_name: str, home: str) -> dict:
    from kefu import schema

    memory = schema.FUNCTIONS_BY_NAME[function_name].memory_mb if function_name in schema.FUNCTIONS_BY_NAME else 256
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,  # empty: no ~/.aws of this machine
        "LANG": "C.UTF-8",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_LAMBDA_FUNCTION_NAME": f"kefu-{function_name}",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "_HANDLER": "handler.handler",
        schema.ENV_WS_CALLBACK_URL: "http://127.0.0.1:9/_aws/ws",
        schema.ENV_JWT_SECRET_ID: schema.LOCAL_JWT_SECRET_NAME,
        "POWERTOOLS_SERVICE_NAME": "kefu",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "POWERTOOLS_METRICS_NAMESPACE": "kefu",
    }
    env.update({table.env_var: table.local_name for table in schema.TABLES.values()})
    env.update({queue.env_var: f"http://127.0.0.1:9/000000000000/{queue.local_name}" for queue in schema.QUEUES.values()})
    return env


def cold_imports(runs: int = COLD_IMPORT_RUNS) -> dict:
    """Median wall time of importing each functions/<name>/handler.py (and bare boto3) in fresh interpreters.

    Each child gets the environment variables a Lambda function would have (dummy credentials, an
    endpoint on the discard port), the function's folder and the domain layer first on sys.path, and
    sees only the packages of the dependencies layer (see _layer_packages). Runs are interleaved
    (boto3, every handler; again...) so that drift of a noisy machine hits all alike. One extra run
    per target, not timed, records socket activity through an audit hook.
    """
    from kefu import schema

    from kefu_local import config

    functions_dir = config.ROOT / "functions"
    layer_dir = config.ROOT / "layers" / "domain" / "python"
    targets = ["boto3"] + [f.name for f in schema.FUNCTIONS]
    layer, hidden = _layer_packages()
    times: dict[str, list[float]] = defaultdict(list)
    cpu_times: dict[str, list[float]] = defaultdict(list)
    network: dict[str, list] = {}
    modules: dict[str, int] = {}
    kept_out: dict[str, list[str]] = {}
    failures: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="kefu-cold-") as home:
        for attempt in range(runs + 1):
            probe = attempt == runs
            for target in targets:
                if target in failures:
                    continue
                function_dir = functions_dir / target if target != "boto3" else functions_dir
                env = _lambda_env(target, home)
                if target != "boto3":
                    env["LAMBDA_TASK_ROOT"] = str(function_dir)
                done = subprocess.run(
                    [sys.executable, "-c", _CHILD, target, str(function_dir), str(layer_dir), "1" if probe else "0",
                     json.dumps(hidden)],
                    env=env, capture_output=True, text=True, timeout=120, cwd=home,
                )
                if done.returncode != 0:
                    failures[target] = done.stderr.strip().splitlines()[-1][:300] if done.stderr.strip() else "failed"
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                if probe:
                    network[target] = result["network"]
                    modules[target] = result["modules"]
                    kept_out[target] = result["hidden"]
                else:
                    times[target].append(result["ms"])
                    cpu_times[target].append(result["cpu_ms"])
    return {"ms": {t: statistics.median(v) for t, v in times.items()}, "runs_ms": dict(times),
            "cpu_ms": {t: statistics.median(v) for t, v in cpu_times.items()},
            "network": network, "modules": modules, "failures": failures, "layer": layer,
            "kept_out": {t: v for t, v in kept_out.items() if v}}


# ======================================================================== the report


def _pct(values: list[float], q: float) -> float:
    xs = sorted(values)
    if not xs:
        return float("nan")
    rank = q * (len(xs) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(xs) - 1)
    return xs[low] + (xs[high] - xs[low]) * (rank - low)


def _latency(values: list[float], mean: bool = True) -> dict:
    out = {"p50": round(_pct(values, 0.50), 2), "p99": round(_pct(values, 0.99), 2)}
    if mean:
        out["mean"] = round(statistics.fmean(values), 2) if values else float("nan")
    out["n"] = len(values)
    return out


def _per(value: float, n: int, digits: int = 4) -> float:
    return round(value / n, digits) if n else float("nan")


def _ddb_requests(stats: dict) -> Counter:
    return Counter({k: v for k, v in stats["aws_requests"].items() if k.startswith("dynamodb.")})


class _Unit:
    """What one event of a phase (a connect, an opening message, a steady message...) costs, measured."""

    def __init__(self, phase: dict, bench_requests: Counter | None = None, external: bool = False):
        from kefu import schema

        n = phase["events"]
        stats = phase["stats"]
        self.n = n
        requests = _ddb_requests(stats) - (bench_requests or Counter())
        self.ddb_requests = _per(sum(requests.values()), n)
        self.ddb_by_operation = {k: _per(v, n) for k, v in sorted(requests.items())}
        # API Gateway messages: every frame a client sent plus every frame it received (route
        # responses and PostToConnection alike); all of them are far below 32 KB, so one message each
        self.apigw_messages = _per(phase["frames_in"] + phase["frames_out"], n)
        self.post_to_connection = _per(stats["aws_requests"].get("apigatewaymanagementapi.PostToConnection", 0), n)
        self.secrets_calls = _per(stats["aws_requests"].get("secretsmanager.GetSecretValue", 0), n)
        self.invocations = {f: _per(v, n) for f, v in sorted(stats["invocations"].items())}
        self.cpu_ms = {f: _per(v, n, 3) for f, v in sorted(stats["cpu_ms"].items())}
        self.errors = stats.get("errors") or {}
        # Lambda duration billed as the handler's CPU time per invocation, rounded up to 1 ms
        self.gb_seconds = 0.0
        self.gb_seconds_wall = 0.0
        self.wall_ms: dict[str, list[float]] = {}
        per_call = phase.get("invocations")
        for function, count in stats["invocations"].items():
            memory_gb = schema.FUNCTIONS_BY_NAME[function].memory_mb / 1024
            if per_call and function in per_call:
                billed = sum(max(1, math.ceil(cpu)) for cpu, _ in per_call[function])
                billed_wall = sum(max(1, math.ceil(wall)) for _, wall in per_call[function])
                self.wall_ms[function] = [wall for _, wall in per_call[function]]
            else:
                billed = count * max(1, math.ceil(stats["cpu_ms"].get(function, 0) / max(count, 1)))
                billed_wall = billed
            self.gb_seconds += billed / 1000 * memory_gb
            self.gb_seconds_wall += billed_wall / 1000 * memory_gb
        self.gb_seconds /= n
        self.gb_seconds_wall /= n
        # DynamoDB capacity units
        ddb = phase.get("ddb")
        if ddb is not None and not external:
            units = Counter()
            for source in ("handlers", "stream"):
                units.update(ddb["units"].get(source, {}))
            self.rru = units["rru"] / n
            self.wru = units["wru"] / n
            self.gsi_wru = units["gsi_wru"] / n
            self.units_method = "per request: item sizes, items per transaction, index membership"
        else:  # op-type fallback: reads 0.5 RRU, transactions of 3 items, single writes 1 WRU, no index writes known
            per_op = {"Query": (0.5, 0), "GetItem": (0.5, 0), "TransactWriteItems": (0, 6), "PutItem": (0, 1),
                      "UpdateItem": (0, 1), "DeleteItem": (0, 1)}
            self.rru = sum(per_op.get(k.split(".", 1)[1], (0, 0))[0] * v for k, v in requests.items()) / n
            self.wru = sum(per_op.get(k.split(".", 1)[1], (0, 0))[1] * v for k, v in requests.items()) / n
            self.gsi_wru = 0.0
            self.units_method = "operation type only"

    def usd(self, wall: bool = False) -> dict:
        lambda_requests = sum(self.invocations.values())
        return {
            "apigateway_messages": self.apigw_messages * PRICES["apigw_ws_message"],
            "lambda_requests": lambda_requests * PRICES["lambda_request"],
            "lambda_duration": (self.gb_seconds_wall if wall else self.gb_seconds) * PRICES["lambda_arm64_gb_second"],
            "dynamodb_reads": self.rru * PRICES["dynamodb_rru"],
            "dynamodb_writes": self.wru * PRICES["dynamodb_wru"],
            "dynamodb_gsi_writes": self.gsi_wru * PRICES["dynamodb_wru"],
            "secretsmanager": self.secrets_calls * PRICES["secretsmanager_api_call"],
        }

    def describe(self) -> dict:
        return {
            "events": self.n,
            "apigw_messages": self.apigw_messages,
            "post_to_connection": self.post_to_connection,
            "lambda_invocations": self.invocations,
            "lambda_cpu_ms": self.cpu_ms,
            "lambda_gb_seconds": round(self.gb_seconds, 7),
            "ddb_requests": self.ddb_requests,
            "ddb_requests_by_operation": self.ddb_by_operation,
            "ddb_rru": round(self.rru, 3),
            "ddb_wru": round(self.wru, 3),
            "ddb_gsi_wru": round(self.gsi_wru, 3),
            "secretsmanager_calls": self.secrets_calls,
            "usd": round(sum(self.usd().values()), 9),
        }


def _report(conversations, messages, n_agents, clients: _Clients, meter: _Meter, interleaved, idle, cold,
            external: bool) -> dict:
    from kefu import schema

    phases = meter.phases
    bench = {name: Counter() for name in phases}
    if not external:  # the PutItem sampler and our own setup calls are in this process's STATS: take them out
        for name, phase in phases.items():
            bench[name] = Counter({k: v for k, v in phase["ddb"]["requests"].get("bench", {}).items()
                                   if k.startswith("dynamodb.")})
    units = {name: _Unit(phase, bench[name], external) for name, phase in phases.items()}
    steady, opening = units["steady"], units["open"]
    steady_stats = phases["steady"]["stats"]
    n_steady = phases["steady"]["events"]

    # ---------------------------------------------------------------- requests and CPU
    # the message path's handlers; the stream consumers (metrics, webhooks, channel replies) run after it
    stream_consumers = {f.name for f in schema.FUNCTIONS if f.stream_of}
    handler_cpu = {f: v for f, v in steady_stats["cpu_ms"].items() if f not in stream_consumers}
    stream_requests = Counter()
    if not external:
        ddb = phases["steady"]["ddb"]["requests"]
        stream_requests = Counter({k: v for k, v in ddb.get("stream", {}).items() if k.startswith("dynamodb.")})

    def by_source(phase: str) -> dict | None:
        if external:
            return None
        requests = phases[phase]["ddb"]["requests"]
        n = phases[phase]["events"]
        return {name: _per(sum(v for k, v in requests.get(source, {}).items() if k.startswith("dynamodb.")), n)
                for name, source in (("handlers", "handlers"), ("stream_metrics", "stream"))}

    def cpu_per_event(phase: str) -> dict:
        n = phases[phase]["events"]
        return {k: round(v * 1000 / n, 2) if v is not None else None for k, v in phases[phase]["cpu_s"].items()}

    # ---------------------------------------------------------------- cost
    per_conversation_events = {
        "connect": 1,
        "open": 1,
        "steady": COST_MESSAGES - 1,
        "disconnect": 1,
    }

    def conversation_cost(steady_count: int, wall: bool = False) -> tuple[dict, dict]:
        by_service: Counter = Counter()
        by_part: dict[str, float] = {}
        for name, count in {**per_conversation_events, "steady": steady_count}.items():
            usd = units[name].usd(wall)
            by_service.update({k: v * count for k, v in usd.items()})
            by_part[name] = sum(usd.values()) * count
        minutes = COST_CONNECTIONS * COST_CONNECTION_MINUTES * PRICES["apigw_ws_connection_minute"]
        by_service["apigateway_connection_minutes"] += minutes
        by_part["connection_minutes"] = minutes
        return dict(by_service), by_part

    by_service, by_part = conversation_cost(COST_MESSAGES - 1)
    usd_1000 = 1000 * sum(by_service.values())
    by_service_40, _ = conversation_cost(2 * COST_MESSAGES - 1)
    by_service_wall, _ = conversation_cost(COST_MESSAGES - 1, wall=True)
    by_service_no_gsi = dict(by_service, dynamodb_gsi_writes=0)

    # ---------------------------------------------------------------- cold imports
    cold_import_ms = {f.name: round(cold["ms"][f.name], 1) if f.name in cold["ms"] else None for f in schema.FUNCTIONS}
    boto3_ms = cold["ms"].get("boto3")
    cold_import_ms["boto3"] = round(boto3_ms, 1) if boto3_ms else None
    handler_ms = [v for k, v in cold_import_ms.items() if k != "boto3" and v is not None]
    complete = boto3_ms and len(handler_ms) == len(schema.FUNCTIONS)
    ratio_max = max(handler_ms) / boto3_ms if complete else float("inf")
    cold_import_ms["ratio_max"] = round(ratio_max, 2) if complete else None
    network = {k: v for k, v in cold["network"].items() if v}

    # ---------------------------------------------------------------- latency
    e2e = _latency(clients.e2e_ms)
    putitem = _latency(interleaved, mean=False)
    putitem_idle = _latency(idle, mean=False)
    ratio = e2e["p99"] / putitem["p99"] if putitem["n"] else float("nan")

    wall_ms = {f: _latency(v) for f, v in steady.wall_ms.items()}
    unloaded_e2e = clients.unloaded_e2e_ms

    def call_ms(phase: str) -> dict | None:
        """Where the handlers' wall time goes: their AWS calls, timed around botocore inside the handler."""
        if external:
            return None
        return {key: _latency(values) for key, values in sorted(phases[phase]["ddb"]["latency_ms"].items())
                if not key.startswith("bench:")}
    report = {
        "e2e_ms": e2e,
        "putitem_ms": {**putitem, "sampling": "interleaved with the steady phase, one thread of this process"},
        "putitem_idle_ms": {**putitem_idle, "sampling": "right after the steady phase, nothing else running"},
        "e2e_p99_over_putitem_p99": round(ratio, 2),
        "e2e_p99_over_putitem_idle_p99": round(e2e["p99"] / putitem_idle["p99"], 2) if idle else None,
        "ack_ms": _latency(clients.ack_ms),
        "open_e2e_ms": _latency(clients.open_e2e_ms),
        "unloaded": {
            "what": f"{UNLOADED_MESSAGES} messages of one conversation, one at a time, each followed by one PutItem",
            "e2e_ms": _latency(unloaded_e2e),
            "putitem_ms": _latency(clients.unloaded_putitem_ms, mean=False),
            "e2e_p99_over_putitem_p99": round(_pct(unloaded_e2e, 0.99) / _pct(clients.unloaded_putitem_ms, 0.99), 2),
            "aws_call_ms": call_ms("unloaded"),
            "handler_wall_ms": {f: _latency(v) for f, v in units["unloaded"].wall_ms.items()},
        },
        "steady_messages_per_s": round(n_steady / clients.phase_seconds["steady"], 1),
        "process_cpu_ms_per_message": cpu_per_event("steady"),
        "ddb_requests_per_message": steady.ddb_requests,
        "ddb_requests_by_operation": steady.ddb_by_operation,
        "ddb_requests_per_message_by_source": by_source("steady"),
        "first_message_ddb_requests": opening.ddb_requests,
        "first_message_ddb_requests_by_operation": opening.ddb_by_operation,
        "first_message_ddb_requests_by_source": by_source("open"),
        "ddb_units_per_message": {"rru": round(steady.rru, 3), "wru": round(steady.wru, 3),
                                  "gsi_wru": round(steady.gsi_wru, 3), "method": steady.units_method},
        "handler_cpu_ms_per_message": _per(sum(handler_cpu.values()), n_steady, 3),
        "handler_cpu_ms_by_function": {f: _per(v, n_steady, 3) for f, v in sorted(handler_cpu.items())},
        "handler_wall_ms_per_invocation": wall_ms,
        "aws_call_ms": call_ms("steady"),
        "stream_metrics": {
            "invocations_per_message": _per(steady_stats["invocations"].get("stream_metrics", 0), n_steady),
            "cpu_ms_per_message": _per(steady_stats["cpu_ms"].get("stream_metrics", 0), n_steady, 3),
            "ddb_requests_per_message": _per(sum(stream_requests.values()), n_steady) if not external else None,
        },
        "stream_consumers_cpu_ms_per_message": {
            f: _per(v, n_steady, 3) for f, v in sorted(steady_stats["cpu_ms"].items()) if f in stream_consumers},
        "post_to_connection_per_message": steady.post_to_connection,
        "cold_import_ms": cold_import_ms,
        "cold_import_runs_ms": {k: [round(x, 1) for x in v] for k, v in cold["runs_ms"].items()},
        "cold_import_cpu_ms": {**{k: round(v, 1) for k, v in cold["cpu_ms"].items()},
                               "ratio_max": round(max(v for k, v in cold["cpu_ms"].items() if k != "boto3")
                                                  / cold["cpu_ms"]["boto3"], 2) if "boto3" in cold["cpu_ms"] else None},
        "cold_import_kept_out": cold["kept_out"],
        "cold_import_network": network or "none: no socket connect or name lookup while importing any handler",
        "cold_import_modules": cold["modules"],
        "usd_per_1000_conversations": round(usd_1000, 4),
        "amazon_connect_usd_per_1000_conversations": round(
            1000 * COST_MESSAGES * PRICES["amazon_connect_chat_message"], 2),
        "cost_breakdown": {
            "usd_per_1000_conversations_by_service": {k: round(1000 * v, 4) for k, v in sorted(by_service.items())},
            "usd_per_1000_conversations_by_part": {k: round(1000 * v, 4) for k, v in by_part.items()},
            "units": {name: unit.describe() for name, unit in units.items()},
            "usd_per_1000_conversations_without_gsi_writes": round(1000 * sum(by_service_no_gsi.values()), 4),
            "usd_per_1000_conversations_if_20_customer_messages_and_20_replies":
                round(1000 * sum(by_service_40.values()), 4),
            "usd_per_1000_conversations_if_lambda_billed_on_local_wall_time":
                round(1000 * sum(by_service_wall.values()), 4),
            "prices": PRICES,
        },
        "assumptions": [
            f"a conversation is {COST_MESSAGES} messages: the customer's opening message (measured in the open phase) "
            f"plus {COST_MESSAGES - 1} steady messages; agent replies cost what a steady customer message costs "
            "(same route, same Query + TransactWriteItems, one frame to the other side), so the 19 may be either "
            "direction. The same 20 messages are priced for Amazon Connect (20 x USD 0.004).",
            "per conversation also: the customer's $connect (authorizer + ws_connect) and $disconnect, measured; "
            "agents' connections are long-lived and shared, so their connect/disconnect is not charged per "
            "conversation",
            f"connection minutes: {COST_CONNECTIONS} connections (customer + the agent's share) x "
            f"{COST_CONNECTION_MINUTES} minutes per conversation",
            "API Gateway messages: every frame a client sent plus every frame it received (route responses such as "
            "acks, and each PostToConnection), counted on the client sockets; all are < 32 KB, so 1 message each",
            "Lambda duration: the handler's thread CPU time per invocation rounded up to 1 ms, at the function's "
            "memory from kefu.schema (arm64 price); real billed duration also includes the waits on DynamoDB and "
            "the @connections API, and a 256 MB function gets ~1/7 of a vCPU; see the wall-time variant",
            "DynamoDB " + _Accountant.__doc__.split("\n\n", 1)[1].strip().replace("\n    ", " "),
            "DynamoDB reads are eventually consistent (PynamoDB's default) unless the request asked otherwise",
            "stream_metrics: its invocations (per batch), CPU and Metrics-table writes are included as measured "
            "locally (poller every 0.2 s); on AWS, GetRecords by a Lambda event source mapping is free and "
            "batches with a 1 s window are larger, so this is an upper bound",
            "not included: CloudWatch Logs ingestion, X-Ray traces (tracing is active on the functions), data "
            "transfer out, storage (messages and dedup markers have no TTL), free tiers",
        ] + (["external stack: capacity units from operation types only (3 items per transaction, no index "
              "writes); the in-process run counts them per request"] if external else []),
        "targets": {
            "ddb_requests_per_message_le_3": steady.ddb_requests <= 3,
            "e2e_p99_le_5x_putitem_p99": ratio <= 5,
            "handler_cold_imports_le_3x_boto3": ratio_max <= 3,
            "usd_per_1000_conversations_le_0_20": usd_1000 <= 0.20,
        },
        "config": {
            "conversations": conversations,
            "messages": messages,
            "concurrency": CONCURRENCY,
            "agents": n_agents,
            "agent_seats": AGENT_SEATS,
            "python": platform.python_version(),
            "machine_cores": os.cpu_count(),
            "platform": platform.platform(),
            "stack": "external" if external
            else "own LocalStack (moto server child process, gateway + handlers in-process)",
            "phase_seconds": {k: round(v, 2) for k, v in clients.phase_seconds.items()},
        },
        "errors": {
            "client": clients.errors[:20],
            "handlers": {name: phase["stats"]["errors"] for name, phase in phases.items()
                         if phase["stats"].get("errors")},
            "cold_import": cold["failures"],
        },
    }
    return report
