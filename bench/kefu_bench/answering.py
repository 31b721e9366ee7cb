"""`kefu bench answering`: accuracy, decisions, calibration and latency of the bot on a KB.

Imports the KB through the REST API of a local stack (its own unless --url), waits for the
indexer to train the workspace's model, then asks every query through the answering use case
and, interleaved, sends the same OpenSearch query raw: the latency ratio is measured in one run.
With its own stack it then plays `conversations` customers over WebSocket, each opening a
conversation with one query: how long until the ack, and until the bot's reply.
"""

from __future__ import annotations

import json
import statistics
import time

import requests

BINS = 10


def _lines(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def expected_calibration_error(confidences: list[float], correct: list[bool], bins: int = BINS) -> float:
    total, error = len(confidences), 0.0
    for b in range(bins):
        members = [i for i, c in enumerate(confidences) if min(int(c * bins), bins - 1) == b]
        if members:
            accuracy = sum(correct[i] for i in members) / len(members)
            confidence = sum(confidences[i] for i in members) / len(members)
            error += len(members) / total * abs(accuracy - confidence)
    return error


def score(queries: list[dict], decisions: list[dict]) -> dict:
    in_scope = [i for i, q in enumerate(queries) if q.get("article_id")]
    oos = [i for i, q in enumerate(queries) if not q.get("article_id")]
    right = [bool(q.get("article_id")) and d["article_id"] == q["article_id"] for q, d in zip(queries, decisions)]
    report: dict = {"queries": len(queries), "in_scope": len(in_scope), "out_of_scope": len(oos),
                    "top1_accuracy": round(sum(right[i] for i in in_scope) / len(in_scope), 4) if in_scope else None,
                    "decisions": {}}
    for kind in ("answer", "review", "handoff"):
        members = [i for i, d in enumerate(decisions) if d["decision"] == kind]
        if kind == "handoff":  # right to hand off: out of scope, or the top article was wrong
            good = [not right[i] for i in members]
        else:
            good = [right[i] for i in members]
        report["decisions"][kind] = {"share": round(len(members) / len(queries), 4),
                                     "precision": round(sum(good) / len(members), 4) if members else None,
                                     "count": len(members)}
    report["oos_not_auto_answered"] = (round(sum(decisions[i]["decision"] != "answer" for i in oos) / len(oos), 4)
                                       if oos else None)
    scored = [i for i, d in enumerate(decisions) if d["article_id"] is not None]
    report["ece"] = round(expected_calibration_error([decisions[i]["confidence"] for i in scored],
                                                     [right[i] for i in scored]), 4) if scored else None
    return report


def run(kb: str, queries_path: str, workspace: str = "bench", url: str | None = None, limit: int | None = None,
        conversations: int = 50) -> dict:
    from kefu import tokens, wiring
    from kefu.models import Agent

    from kefu_local import config

    queries = _lines(queries_path)[:limit] if limit else _lines(queries_path)
    stack = None
    if url is None:
        from kefu_local.stack import LocalStack

        stack = LocalStack(port=0, seed=False).start()
        url = stack.base_url
        wiring.store().put_workspace(workspace, "answering benchmark")
        wiring.store().put_agent(Agent(workspace, "bench-admin", "bench", role="admin"))
    try:
        token = tokens.issue(config.signing_key(), kind="agent", workspace=workspace, subject="bench-admin")
        headers = {"Authorization": f"Bearer {token}"}
        api = f"{url.rstrip('/')}/api/workspaces/{workspace}/kb"
        before = (requests.get(f"{api}/model", headers=headers, timeout=30).json().get("model") or {}).get("trainedAt")
        started = time.monotonic()
        with open(kb, "rb") as handle:
            imported = requests.post(f"{api}/import", data=handle.read(), headers=headers, timeout=300).json()
        model = None
        while time.monotonic() - started < 1800:
            model = requests.get(f"{api}/model", headers=headers, timeout=30).json().get("model") or {}
            if model.get("trainedAt") and model["trainedAt"] != before:
                break
            time.sleep(1)
        ready_s = time.monotonic() - started

        answerer, index = wiring.answerer(), wiring.search_index()
        answerer.models.current(workspace)  # load the model once, as a warm container has it
        decisions, answer_ms, search_ms = [], [], []
        for query in queries:
            t0 = time.perf_counter()
            decision = answerer.answer(workspace, query["text"])
            answer_ms.append((time.perf_counter() - t0) * 1000)
            favourites = [c["id"] for c in decision.candidates] or []
            body = index.query(workspace, query["text"][:2000], favourites, 5 + len(favourites))
            t0 = time.perf_counter()
            index.search.search(index=index.index, body=body)
            search_ms.append((time.perf_counter() - t0) * 1000)
            decisions.append(decision.public())
        report = score(queries, decisions)
        report["latency_ms"] = {"p50": round(_percentile(answer_ms, 0.5), 3), "p99": round(_percentile(answer_ms, 0.99), 3),
                                "mean": round(statistics.fmean(answer_ms), 3)}
        report["search_ms"] = {"p50": round(_percentile(search_ms, 0.5), 3), "p99": round(_percentile(search_ms, 0.99), 3),
                               "mean": round(statistics.fmean(search_ms), 3)}
        report["latency_ratio_p99"] = round(report["latency_ms"]["p99"] / report["search_ms"]["p99"], 2)
        if stack is not None and conversations:
            report["conversations"] = _conversations(stack, workspace, queries, conversations)
        report["kb"] = {"imported": imported.get("imported"), "refused": imported.get("refused"),
                        "ready_s": round(ready_s, 1), "model": (model or {}).get("info"),
                        "train_s": (model or {}).get("trainSeconds")}
        return report
    finally:
        if stack is not None:
            stack.stop()


def _conversations(stack, workspace: str, queries: list[dict], count: int) -> dict:
    """Customers over real WebSockets: each sends one query as the first message of a conversation.
    The bot's reply is compared with the ack of the same message (one stored message round trip)."""
    import secrets

    from kefu import tokens
    from websockets.sync.client import connect

    from kefu_local import config

    step = max(1, len(queries) // count)
    picked = queries[::step][:count]
    ack_ms, reply_ms, decisions = [], [], {}
    for query in picked:
        token = tokens.issue(config.signing_key(), kind="visitor", workspace=workspace,
                             subject="bench-" + secrets.token_hex(4), name="Bench")
        with connect(f"{stack.ws_url}?token={token}", open_timeout=10) as ws:
            t0 = time.perf_counter()
            ws.send(json.dumps({"action": "message", "clientMessageId": "q1", "text": query["text"][:4000]}))
            acked = replied = None
            settled = False  # a handover is done once routing has told the customer (queue, offline...)
            while acked is None or replied is None or not settled:
                frame = json.loads(ws.recv(timeout=30))
                now = (time.perf_counter() - t0) * 1000
                if frame.get("type") == "ack":
                    acked = now
                elif frame.get("type") == "message" and frame["sender"]["role"] == "bot":
                    replied = now
                    decision = frame.get("meta", {}).get("decision", "?")
                    decisions[decision] = decisions.get(decision, 0) + 1
                    settled = settled or decision == "answer"
                elif frame.get("type") in ("routed", "queue", "offline"):
                    settled = True
            ack_ms.append(acked)
            reply_ms.append(replied)
    return {
        "count": len(picked),
        "decisions": decisions,
        "ack_ms": {"p50": round(_percentile(ack_ms, 0.5), 2), "p99": round(_percentile(ack_ms, 0.99), 2)},
        "bot_reply_ms": {"p50": round(_percentile(reply_ms, 0.5), 2), "p99": round(_percentile(reply_ms, 0.99), 2)},
        "bot_reply_vs_ack_p50": round(_percentile(reply_ms, 0.5) / _percentile(ack_ms, 0.5), 2),
    }
