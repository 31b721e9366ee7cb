"""`kefu bench fuzz`: Hypothesis-generated frames for every WebSocket action, through real sockets.

`kefu bench fuzz --frames 10000` prints run()'s result as JSON. A local stack (port 0, no demo seed) with
one workspace, an agent and a customer in a conversation with that agent; then `frames` frames, each
drawn by Hypothesis and sent on the customer's or the agent's socket:

- shaped like a real frame of one of the routes in kefu.schema.WS_ROUTES (the fields of its model in
  kefu.frames, each either a plausible value — the conversation's id, the agent's id, a new client message
  id, a known status — or any JSON value at all, and some fields left out or added);
- or an unknown action, a JSON value that is not an object, text that is not JSON, deep nesting, or a
  body of up to 100 KB.

Every frame but raw garbage carries a requestId, so its direct reply is known. Checked for each frame: a
reply arrives (within REPLY_TIMEOUT_S), it is not `internal_error`, no reply or pushed frame carries a
stack trace or a Python exception's name, and the socket stays open. At the end a normal message is still
acknowledged on both sockets, the conversation's messages (synced from seq 0) have consecutive seqs with no
duplicate, and the stack's /health answers. Failures are collected (not raised: nothing is shrunk), so
one run reports all of them.

Call run() in a fresh process (the CLI does): the local stack binds PynamoDB's models and kefu.wiring's
cached adapters to the first endpoint a process sees.
"""

from __future__ import annotations

import json
import re
import secrets
import statistics
import time
from collections import Counter

REPLY_TIMEOUT_S = 15.0
MAX_BODY = 100_000  # the gateway closes a socket above 128 KB (API Gateway's frame limit): not fuzzed here
LEAK = re.compile(r"Traceback|File \"|\b[A-Z][A-Za-z]+(Error|Exception)\b|botocore|pynamodb|/site-packages/")
PROGRESS_EVERY = 1000


def _strategies(conversation: dict, agent_id: str):
    """conversation["id"]: the conversation frames name, updated by run() when the customer opens a new one."""
    from hypothesis import strategies as st

    from kefu import frames, schema

    routes = sorted(k for k in schema.WS_ROUTES if not k.startswith("$"))
    json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=False),
                          st.text(max_size=80))
    any_json = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                               st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                            max_leaves=12)
    def mostly(valid, *invalid):  # about nine in ten draws valid (st.one_of alone favours no branch)
        if not invalid:
            return valid
        return st.sampled_from(range(10)).flatmap(lambda i: valid if i < 9 else st.one_of(*invalid))

    plausible = {
        "conversationId": mostly(st.builds(lambda: conversation["id"]), st.sampled_from(["c_" + "0" * 20, "../etc", ""])),
        "agentId": mostly(st.just(agent_id), st.sampled_from(["nobody", "*"])),
        "clientMessageId": st.builds(lambda: "f" + secrets.token_hex(8)),
        "text": mostly(st.text(min_size=1, max_size=200).filter(str.strip),
                       st.sampled_from(["", "x" * 4001, "<script>alert(1)</script>", "转人工", "😀" * 50])),
        "status": mostly(st.sampled_from(["online", "away", "offline"]), st.just("busy")),
        "afterSeq": mostly(st.integers(0, 50), st.integers(-5, 10**13)),
        "seq": mostly(st.integers(1, 50), st.integers(-5, 10**13)),
        "limit": mostly(st.integers(1, 200), st.integers(-5, 500)),
        "score": mostly(st.integers(1, 5), st.integers(-2, 8), st.just("5")),
        "helpful": mostly(st.booleans(), st.just("yes")),
        "decision": mostly(st.sampled_from(["send", "edit", "reject"]), st.just("maybe")),
        "typing": st.booleans(), "resolved": st.booleans(),
        "group": mostly(st.sampled_from(["售后", "billing"]), st.sampled_from(["no such group", "a b"])),
        "language": mostly(st.sampled_from(["zh", "en", "zh-CN"]), st.just("klingon!")),
        "name": mostly(st.text(min_size=1, max_size=40).filter(str.strip), st.just("")),
        "contact": mostly(st.just("13800138000"), st.just("")),
        "question": mostly(st.text(min_size=1, max_size=200).filter(str.strip), st.just("")),
        "to": mostly(st.sampled_from([{"agentId": agent_id}, {"group": "售后"}]), st.just({}), any_json),
        "attachments": mostly(st.just([]), st.lists(st.fixed_dictionaries({"key": st.text(max_size=40)}), max_size=7),
                              any_json),
    }

    def shaped(route: str):
        model = frames.FRAMES.get(route)
        fields = model.model_fields if model else {}
        # required fields mostly present and plausible, so that most frames get past validation into the
        # handlers' logic; the rest is any JSON, missing or extra
        required = {name: mostly(plausible.get(name, any_json), any_json)
                    for name, f in fields.items() if f.is_required() and name != "action"}
        optional = {name: mostly(plausible.get(name, any_json), any_json) for name, f in fields.items()
                    if not f.is_required()}
        return st.one_of(
            st.fixed_dictionaries({"action": st.just(route), **required}, optional={
                **optional, "meta": st.dictionaries(st.text(max_size=10), st.text(max_size=40), max_size=3)}),
            st.fixed_dictionaries({"action": st.just(route)}, optional={**required, **optional, "extra": any_json}))

    big = st.integers(1_000, MAX_BODY).map(lambda size: {"action": "message", "clientMessageId": "big",
                                                         "text": "字" * (size // 3)})
    dict_frames = st.one_of(
        *[shaped(route) for route in routes], big,
        st.fixed_dictionaries({"action": st.one_of(st.text(max_size=30), any_json)}, optional={"conversationId": any_json}),
        st.dictionaries(st.text(max_size=12), any_json, max_size=5),
    )
    raw = st.one_of(
        st.text(max_size=300),
        any_json.map(json.dumps),
        st.integers(1, 200).map(lambda depth: "[" * depth + "]" * depth),
        st.integers(1, 300).map(lambda depth: '{"action":"message","a":' + "[" * depth + "]" * depth + "}"),
    )
    return st.tuples(st.sampled_from(["customer", "agent"]), st.one_of(dict_frames, dict_frames, dict_frames, raw))


def run(frames: int = 10_000, seed: int = 0) -> dict:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    from kefu import schema, tokens, wiring
    from kefu.models import Agent

    from kefu_local import config
    from kefu_local.stack import LocalStack

    from kefu_local.wsclient import Socket

    stack = LocalStack(port=0, seed=False).start()
    workspace = "fz-" + secrets.token_hex(4)
    store = wiring.store()
    store.put_workspace(workspace, "fuzz")
    store.put_agent(Agent(workspace, "fz-agent", "Fuzz Agent", role="supervisor", max_concurrent=50))
    key = config.signing_key()
    sockets: dict[str, Socket] = {}
    failures: list[str] = []
    codes: Counter = Counter()
    by_route: Counter = Counter()
    reply_ms: list[float] = []
    started = time.monotonic()
    try:
        sockets["agent"] = Socket(f"{stack.ws_url}?token=" + tokens.issue(key, kind="agent", workspace=workspace,
                                                                         subject="fz-agent"))
        sockets["agent"].request({"action": "presence", "status": "online", "requestId": "p"}, requestId="p")
        sockets["customer"] = Socket(f"{stack.ws_url}?token=" + tokens.issue(key, kind="visitor", workspace=workspace,
                                                                            subject="fz-customer", name="Fuzz"))
        ack = sockets["customer"].request({"action": "message", "clientMessageId": "first", "text": "你好",
                                           "requestId": "first"}, requestId="first")
        conversation_id = ack["conversationId"]
        sockets["agent"].expect(type="assigned", timeout=REPLY_TIMEOUT_S)
        count = 0

        known_routes = set(schema.WS_ROUTES)
        current = {"id": conversation_id}  # a close ends it: the customer's next message opens the next one

        @hypothesis_seed(seed)
        @settings(max_examples=frames, deadline=None, database=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=_strategies(current, "fz-agent"))
        def send(case):
            nonlocal count
            who, frame = case
            count += 1
            socket = sockets[who]
            request_id = f"r{count}"
            if isinstance(frame, dict):
                frame = {**frame, "requestId": request_id}
                body = json.dumps(frame, ensure_ascii=False)
                route = frame["action"] if isinstance(frame.get("action"), str) else "(no action)"
            else:
                body, route, request_id = frame, "(raw)", None
            by_route[route if route in known_routes or route in ("(raw)", "(no action)") else "(other action)"] += 1
            t0 = time.perf_counter()
            try:
                socket.send(body)
                if request_id:
                    reply = socket.expect(requestId=request_id, timeout=REPLY_TIMEOUT_S)
                else:  # no requestId to echo: the first error frame without one
                    reply = socket.expect(match=lambda f: f.get("type") == "error" and "requestId" not in f,
                                          timeout=REPLY_TIMEOUT_S)
            except Exception as error:  # noqa: BLE001 - recorded: a timeout, or the socket closed under us
                failures.append(f"{who} {route}: no reply ({type(error).__name__}: {str(error)[:200]}) to {body[:200]!r}")
                sockets[who] = _reconnect(stack, key, workspace, who)
                return
            reply_ms.append((time.perf_counter() - t0) * 1000)
            code = reply.get("code") if reply.get("type") == "error" else reply.get("type", "?")
            codes[code] += 1
            if code == "ack" and who == "customer":
                current["id"] = reply["conversationId"]
            if code == "internal_error":
                failures.append(f"{who} {route}: internal_error for {body[:300]!r}")
            for pushed in [reply, *socket.backlog]:
                text = json.dumps(pushed, ensure_ascii=False)
                if pushed.get("type") == "error" and LEAK.search(text):
                    failures.append(f"{who} {route}: a reply leaks internals: {text[:300]}")
            socket.backlog = [f for f in socket.backlog if f.get("type") not in ("error", "ack")][-200:]
            if count % PROGRESS_EVERY == 0:
                import sys

                print(f"fuzz: {count} frames, {len(failures)} failures, {time.monotonic() - started:.0f} s",
                      file=sys.stderr, flush=True)

        send()
        # still working: a normal message on both sockets, the history whole, the stack healthy
        for who in ("customer", "agent"):
            done = sockets[who].request({"action": "message", "conversationId": conversation_id, "clientMessageId":
                                         f"last-{who}", "text": "still here", "requestId": f"last-{who}"},
                                        requestId=f"last-{who}")
            if done.get("type") != "ack":
                # the fuzz may have closed the conversation (a valid close frame): then a new one opens for the
                # customer and the agent is told it is closed; both are answers, neither a crash
                if done.get("code") not in ("conversation_closed", "not_found", "forbidden"):
                    failures.append(f"{who}: the last message got {done}")
        history = sockets["agent"].request({"action": "sync", "conversationId": conversation_id, "afterSeq": 0,
                                            "requestId": "history"}, requestId="history")
        seqs = [m["seq"] for m in history.get("messages", [])]
        if seqs != list(range(1, len(seqs) + 1)):
            failures.append(f"history seqs not consecutive: {seqs[:50]}")
        import requests

        if requests.get(f"{stack.base_url}/api/health", timeout=10).status_code != 200:
            failures.append("/health does not answer 200 after the fuzz")
        return {
            "frames": count, "seconds": round(time.monotonic() - started, 1),
            "by_route": dict(sorted(by_route.items())), "replies": dict(codes.most_common()),
            "reply_ms": {"p50": round(statistics.median(reply_ms), 2) if reply_ms else None,
                         "p99": round(sorted(reply_ms)[int(0.99 * (len(reply_ms) - 1))], 2) if reply_ms else None},
            "history_messages": len(seqs), "failures": failures[:50], "failure_count": len(failures),
        }
    finally:
        for socket in sockets.values():
            socket.close()
        stack.stop()



def _reconnect(stack, key, workspace, who):
    from kefu import tokens

    from kefu_local.wsclient import Socket

    if who == "agent":
        return Socket(f"{stack.ws_url}?token=" + tokens.issue(key, kind="agent", workspace=workspace, subject="fz-agent"))
    return Socket(f"{stack.ws_url}?token=" + tokens.issue(key, kind="visitor", workspace=workspace,
                                                          subject="fz-customer", name="Fuzz"))
