"""`kefu bench chaos`: many customers and agents, sockets killed at random, duplicate sends; nothing lost.

`kefu bench chaos --customers 200 --agents 20` prints run()'s result as JSON (exit status 1 unless lost,
duplicated and out of order are all 0). A local stack (port 0, no demo seed), a workspace without a bot, so
every conversation goes to an agent (`agents` agents with room for all customers). Each customer connects
at a random moment of the ramp, then sends `messages` messages with a think time, each one until it is
acknowledged (resent with the same clientMessageId after a timeout or a reconnect; one send in `dup_every`
is sent twice at once). Each agent answers every customer message it sees with one reply. Meanwhile a
chaos task kills a random client's socket without a close handshake every `kill_every_s` seconds; the
client reconnects after a pause and catches up with `sync` from the last seq it delivered (an agent also
asks `inbox` for conversations assigned while it was away).

The clients deliver messages the way web/kefu-client.js does: by seq, holding back what arrives after a
gap until a sync fills it, dropping what they already have. Reported, against each conversation's history
read at the end (the server's truth):
- lost: messages a sender sent that are not in the history (acknowledged or not), and history messages a
  customer never delivered (customers see their whole conversation; agents are checked for the
  conversations they hold at the end, which can be transferred while an agent is away);
- duplicated: a clientMessageId stored more than once, or a client delivering one message twice;
- out of order: a sender's messages stored in another order than it sent them, or a client delivering
  seqs other than 1, 2, 3... of the history.

Call run() in a fresh process (the CLI does): the local stack binds PynamoDB's models and kefu.wiring's
cached adapters to the first endpoint a process sees.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import statistics
import sys
import time
from collections import Counter, defaultdict

ACK_TIMEOUT_S = 10.0
PROGRESS_S = 15.0


class _Client:
    """One socket's user: a customer or an agent, delivering messages by seq like kefu-client.js."""

    def __init__(self, bench: _Bench, role: str, ident: str):
        self.bench, self.role, self.id = bench, role, ident
        self.ws = None
        self.connected = asyncio.Event()
        self.last: dict[str, int] = defaultdict(int)  # conversation -> last delivered seq
        self.held: dict[str, dict[int, dict]] = defaultdict(dict)  # after a gap, until a sync fills it
        self.delivered: dict[str, list[dict]] = defaultdict(list)
        self.syncing: set[str] = set()
        self.acks: dict[str, asyncio.Future] = {}
        self.replied: set[tuple[str, int]] = set()
        self.turns: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)  # an agent's replies, one at a time
        self.conversation_id: str | None = None  # a customer's
        self.reconnects = 0
        self.stopped = False

    # ------------------------------------------------------------ the socket

    async def connect(self) -> None:
        from websockets.asyncio.client import connect

        token = self.bench.token(self.role, self.id)
        self.ws = await connect(f"{self.bench.ws_url}?token={token}", compression=None, max_size=2**22,
                                ping_interval=None, open_timeout=60, close_timeout=2)
        asyncio.create_task(self._read(self.ws))
        self.connected.set()
        if self.role == "agent":
            await self.send({"action": "presence", "status": "online"})
            await self.send({"action": "inbox"})
        for conversation in list(self.last) or ([self.conversation_id] if self.conversation_id else []):
            await self._sync(conversation)

    async def send(self, frame: dict) -> None:
        try:
            await self.ws.send(json.dumps(frame, ensure_ascii=False))
        except Exception:  # noqa: BLE001 - killed meanwhile: the reader reconnects, senders resend
            pass

    def kill(self) -> None:
        if self.ws is not None and self.connected.is_set():
            self.connected.clear()
            self.ws.transport.abort()  # no close handshake: a dropped network, not a goodbye

    async def _read(self, ws) -> None:
        try:
            async for raw in ws:
                self._on(json.loads(raw))
        except Exception:  # noqa: BLE001 - the socket died (killed, or the server closed it)
            pass
        if ws is not self.ws or self.stopped:
            return
        self.connected.clear()
        for future in self.acks.values():
            if not future.done():
                future.set_result(None)  # the sender resends after reconnecting
        self.reconnects += 1
        await asyncio.sleep(self.bench.rng.uniform(0.2, 2.0))
        while not self.stopped:
            try:
                await self.connect()
                return
            except Exception:  # noqa: BLE001 - the stack is busy: back off and try again
                await asyncio.sleep(1.0)

    # ------------------------------------------------------------ frames

    def _on(self, frame: dict) -> None:
        kind = frame.get("type")
        if kind == "ack":
            future = self.acks.get(frame.get("clientMessageId"))
            if future is not None and not future.done():
                future.set_result(frame)
            self.conversation_id = self.conversation_id or (frame["conversationId"] if self.role == "customer" else None)
            # one's own message is delivered at its ack's seq (the server does not echo it to its sender)
            self._arrive(frame["conversationId"], [{"seq": frame["seq"], "clientMessageId": frame["clientMessageId"],
                                                    "sender": {"role": self.role, "id": self.id}, "text": ""}])
        elif kind == "error":
            future = self.acks.get(frame.get("clientMessageId"))
            if future is not None and not future.done():
                future.set_result(frame)
        elif kind == "message":
            self._arrive(frame["conversationId"], [frame])
        elif kind == "sync":
            conversation = frame["conversationId"]
            self.syncing.discard(conversation)
            self._arrive(conversation, frame.get("messages", []))
            if frame.get("hasMore"):
                asyncio.create_task(self._sync(conversation))
        elif kind == "assigned":
            conversation = frame["conversationId"]
            self.last.setdefault(conversation, 0)
            asyncio.create_task(self._sync(conversation))  # the whole history, from seq 1
        elif kind == "inbox" and self.role == "agent":
            for item in frame.get("conversations", []):
                conversation = item.get("conversationId")
                if conversation and conversation not in self.last:
                    self.last.setdefault(conversation, 0)
                    asyncio.create_task(self._sync(conversation))

    def _arrive(self, conversation: str, messages: list[dict]) -> None:
        held = self.held[conversation]
        for message in messages:
            if message["seq"] > self.last[conversation]:
                held[message["seq"]] = message
            else:
                self.bench.dropped_redeliveries += 1
        while self.last[conversation] + 1 in held:
            message = held.pop(self.last[conversation] + 1)
            self.last[conversation] = message["seq"]
            self.delivered[conversation].append(message)
            if self.role == "agent" and (message.get("sender") or {}).get("role") == "customer":
                key = (conversation, message["seq"])
                if key not in self.replied:
                    self.replied.add(key)
                    asyncio.create_task(self.bench.reply(self, conversation, message))
        if held and conversation not in self.syncing:
            self.bench.gaps += 1
            asyncio.create_task(self._sync(conversation))

    async def _sync(self, conversation: str) -> None:
        self.syncing.add(conversation)
        await self.send({"action": "sync", "conversationId": conversation, "afterSeq": self.last[conversation]})

    # ------------------------------------------------------------ sending

    async def say(self, text: str, conversation: str | None) -> dict | None:
        """Send until acknowledged (the same clientMessageId every time); the ack, or None if never."""
        cmid = f"{self.id}-{secrets.token_hex(6)}"
        frame = {"action": "message", "clientMessageId": cmid, "text": text}
        if conversation:
            frame["conversationId"] = conversation
        self.bench.sent.append((self.id, cmid))
        deadline = time.monotonic() + self.bench.give_up_s
        attempt = 0
        while time.monotonic() < deadline:
            await self.connected.wait()
            future = asyncio.get_running_loop().create_future()
            self.acks[cmid] = future
            await self.send(frame)
            if attempt == 0 and self.bench.rng.random() < 1 / self.bench.dup_every:
                self.bench.duplicate_sends += 1
                await self.send(frame)  # a double tap: the server must store it once
            attempt += 1
            try:
                ack = await asyncio.wait_for(asyncio.shield(future), ACK_TIMEOUT_S)
            except asyncio.TimeoutError:
                ack = None
            if ack is not None and ack.get("type") == "error":
                if ack.get("code") in ("rate_limited", "internal_error", "busy"):
                    await asyncio.sleep(float(ack.get("retryAfter") or 1))
                    continue
                self.bench.refused[ack.get("code")] += 1  # e.g. a conversation transferred away meanwhile
                self.bench.refused_cmids.add(cmid)
                return None
            if ack is not None:
                self.bench.ack_ms.append((time.monotonic() - (deadline - self.bench.give_up_s)) * 1000)
                self.bench.resends += attempt - 1
                return ack
        self.bench.unacknowledged.append(cmid)
        return None


class _Bench:
    def __init__(self, ws_url: str, token, customers: int, agents: int, messages: int, ramp_s: float,
                 kill_every_s: float, dup_every: int, seed: int):
        self.ws_url, self.token = ws_url, token
        self.n_customers, self.n_agents, self.messages = customers, agents, messages
        self.ramp_s, self.kill_every_s, self.dup_every = ramp_s, kill_every_s, dup_every
        self.rng = random.Random(seed)
        self.give_up_s = 180.0
        self.sent: list[tuple[str, str]] = []
        self.unacknowledged: list[str] = []
        self.refused: Counter = Counter()
        self.refused_cmids: set[str] = set()
        self.ack_ms: list[float] = []
        self.kills = self.gaps = self.dropped_redeliveries = self.duplicate_sends = self.resends = 0
        self.clients: list[_Client] = []
        self.replies_pending = 0
        self.finished = 0

    async def reply(self, agent: _Client, conversation: str, message: dict) -> None:
        self.replies_pending += 1
        try:
            await asyncio.sleep(self.rng.uniform(0.2, 1.5))
            async with agent.turns[conversation]:  # in the order it read them
                await agent.say(f"re: {message['text'][:40]}", conversation)
        finally:
            self.replies_pending -= 1

    async def customer(self, client: _Client) -> None:
        await asyncio.sleep(self.rng.uniform(0, self.ramp_s))
        while True:
            try:
                await client.connect()
                break
            except Exception:  # noqa: BLE001 - handshakes time out under load: try again
                await asyncio.sleep(1.0)
        for n in range(self.messages):
            ack = await client.say(f"问题 {n + 1}: 我的订单 #{self.rng.randrange(10**6)} 在哪里？", client.conversation_id)
            if ack is not None:
                client.conversation_id = ack["conversationId"]
            await asyncio.sleep(self.rng.uniform(0.5, 2.5))
        self.finished += 1

    async def chaos(self) -> None:
        while self.finished < self.n_customers:
            await asyncio.sleep(self.rng.expovariate(1 / self.kill_every_s))
            victims = [c for c in self.clients if c.connected.is_set()]
            if victims:
                self.rng.choice(victims).kill()
                self.kills += 1

    async def progress(self, started: float) -> None:
        while True:
            await asyncio.sleep(PROGRESS_S)
            print(f"chaos: {time.monotonic() - started:.0f} s, {self.finished}/{self.n_customers} customers done, "
                  f"{len(self.ack_ms)} acks, {self.kills} kills, {self.resends} resends", file=sys.stderr, flush=True)

    async def drive(self, agents: list[_Client], customers: list[_Client]) -> None:
        started = time.monotonic()
        for agent in agents:
            await agent.connect()
        ticker = asyncio.create_task(self.progress(started))
        chaos = asyncio.create_task(self.chaos())
        await asyncio.gather(*(self.customer(c) for c in customers))
        await chaos
        deadline = time.monotonic() + 120
        while (self.replies_pending or any(not c.connected.is_set() for c in self.clients)) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        await asyncio.sleep(3.0)  # the last fan-outs
        for client in self.clients:  # catch up: each asks for what it may not have seen yet
            for conversation in list(client.last):
                await client._sync(conversation)
        await asyncio.sleep(3.0)
        ticker.cancel()
        for client in self.clients:
            client.stopped = True
            if client.ws is not None:
                await client.ws.close()
        self.seconds = time.monotonic() - started


def run(customers: int = 200, agents: int = 20, messages: int = 4, ramp_s: float = 240.0, kill_every_s: float = 1.0,
        dup_every: int = 10, seed: int = 0) -> dict:
    from kefu import tokens, wiring
    from kefu.models import Agent

    from kefu_local import config
    from kefu_local.stack import LocalStack

    stack = LocalStack(port=0, seed=False).start()
    try:
        workspace = "cx-" + secrets.token_hex(4)
        store = wiring.store()
        store.put_workspace(workspace, "chaos")
        seats = -(-customers // agents) + 2
        for i in range(agents):
            store.put_agent(Agent(workspace, f"agent-{i}", f"Agent {i}", max_concurrent=seats))
        key = config.signing_key()

        def token(role: str, ident: str) -> str:
            if role == "agent":
                return tokens.issue(key, kind="agent", workspace=workspace, subject=ident)
            return tokens.issue(key, kind="visitor", workspace=workspace, subject=ident, name=ident)

        bench = _Bench(stack.ws_url, token, customers, agents, messages, ramp_s, kill_every_s, dup_every, seed)
        agent_clients = [_Client(bench, "agent", f"agent-{i}") for i in range(agents)]
        customer_clients = [_Client(bench, "customer", f"cust-{i}") for i in range(customers)]
        bench.clients = agent_clients + customer_clients
        asyncio.run(bench.drive(agent_clients, customer_clients))
        return _report(bench, store, workspace, agent_clients, customer_clients)
    finally:
        stack.stop()


def _report(bench: _Bench, store, workspace: str, agents: list[_Client], customers: list[_Client]) -> dict:
    histories: dict[str, list] = {}
    conversations = {c.conversation_id for c in customers if c.conversation_id}
    for conversation in conversations:
        messages, after = [], 0
        while True:
            page = store.messages_after(workspace, conversation, after, 200)
            messages.extend(page)
            if len(page) < 200:
                break
            after = page[-1].seq
        histories[conversation] = messages
    stored = Counter(m.client_message_id for h in histories.values() for m in h if m.client_message_id)
    position = {m.client_message_id: (m.conversation_id, m.seq) for h in histories.values() for m in h}
    lost_sent = [cmid for _, cmid in bench.sent if cmid not in stored and cmid not in bench.refused_cmids]
    duplicated = sum(n - 1 for n in stored.values() if n > 1)
    out_of_order = 0
    by_sender: dict[str, list[str]] = defaultdict(list)
    for sender, cmid in bench.sent:
        by_sender[sender].append(cmid)
    for cmids in by_sender.values():
        seen = [position[c] for c in cmids if c in position]
        out_of_order += sum(1 for a, b in zip(seen, seen[1:]) if a[0] == b[0] and b[1] <= a[1])
    lost_delivery = delivered_twice = delivered_out_of_order = 0
    final_holder = {}
    for conversation in conversations:
        meta = store.get_conversation(workspace, conversation)
        final_holder[conversation] = meta.agent_id if meta else None
    checks = [(c, c.conversation_id) for c in customers if c.conversation_id]
    checks += [(a, conv) for a in agents for conv in a.delivered if final_holder.get(conv) == a.id]
    for client, conversation in checks:
        seqs = [m["seq"] for m in client.delivered[conversation]]
        history = [m.seq for m in histories.get(conversation, [])]
        delivered_twice += len(seqs) - len(set(seqs))
        delivered_out_of_order += sum(1 for a, b in zip(seqs, seqs[1:]) if b != a + 1) + (1 if seqs and seqs[0] != 1 else 0)
        lost_delivery += len(set(history) - set(seqs))
    total = sum(len(h) for h in histories.values())
    return {
        "customers": len(customers), "agents": len(agents), "seconds": round(bench.seconds, 1),
        "messages_sent": len(bench.sent), "messages_stored": total,
        "delivered": sum(len(c.delivered[conv]) for c, conv in checks),
        "lost": len(lost_sent) + lost_delivery, "duplicated": duplicated + delivered_twice,
        "out_of_order": out_of_order + delivered_out_of_order,
        "detail": {"lost_sent": len(lost_sent), "lost_delivery": lost_delivery, "duplicated_stored": duplicated,
                   "delivered_twice": delivered_twice, "sender_order_violations": out_of_order,
                   "delivery_order_violations": delivered_out_of_order, "unacknowledged": len(bench.unacknowledged),
                   "refused": dict(bench.refused)},
        "chaos": {"sockets_killed": bench.kills, "reconnects": sum(c.reconnects for c in agents + customers),
                  "duplicate_sends": bench.duplicate_sends, "resends": bench.resends, "gaps_synced": bench.gaps,
                  "redeliveries_dropped": bench.dropped_redeliveries},
        "ack_ms": {"p50": round(statistics.median(bench.ack_ms), 1) if bench.ack_ms else None,
                   "p99": round(sorted(bench.ack_ms)[int(0.99 * (len(bench.ack_ms) - 1))], 1) if bench.ack_ms else None},
        "conversations": len(conversations),
        "examples": {"lost": lost_sent[:5]},
    }
