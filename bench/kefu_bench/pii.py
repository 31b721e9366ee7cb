"""What masking personal data in stored messages costs (issue 8): `kefu bench pii --messages 200`.

One process, one local stack (moto for DynamoDB and KMS). Three workspaces, one conversation each, a customer and
an agent connected; `messages` customer messages one at a time per mode, end-to-end latency = customer send -> the
agent's socket receiving the message frame:

- "plain": maskPii off, text without personal data (the message path as it was);
- "pii_unmasked": maskPii off, text with a mobile, an ID number, a card number and an e-mail (detection not run);
- "pii_masked": maskPii on, the same text: detection, masking, one KMS Encrypt, the record stored.

Modes are interleaved message by message, each first, second and third in turn, so that the machine's noise
hits them alike; the ratios
(masked / unmasked) come from this one run. Also timed in the same run: one raw KMS Encrypt and one raw DynamoDB
PutItem against the same moto, and the pure detection + masking (kefu.pii.redact) of the text, in microseconds.
Moto's KMS is a local AES call behind HTTP; AWS KMS Encrypt is typically a few milliseconds in region, so on AWS
the masked path costs about one KMS round trip more than here.
"""

from __future__ import annotations

import secrets
import statistics
import time

from kefu import pii

TEXT = ("你好，我的手机 13812345678，身份证 11010519491231002X，卡号 4111 1111 1111 1111，"
        "邮箱 zhang.san@example.com，订单还没到")
PLAIN = "你好，我的订单还没到，能帮我查一下物流吗？已经等了三天了"
MODES = ("plain", "pii_unmasked", "pii_masked")


def _summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    if not ordered:
        return {"n": 0}

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)

    return {"n": len(ordered), "p50": round(statistics.median(ordered), 3), "p95": pct(0.95), "p99": pct(0.99),
            "mean": round(statistics.fmean(ordered), 3)}


def run(messages: int = 200, seed: int = 0) -> dict:
    import requests
    from kefu import schema, tokens
    from kefu.models import Agent
    from kefu_local.stack import LocalStack
    from kefu_local.wsclient import Socket

    stack = LocalStack(port=0, seed=False).start()
    try:
        from kefu import wiring

        store, key = wiring.store(), wiring.signing_key()
        sockets, conversations = [], {}
        for mode in MODES:
            ws = f"bench-pii-{mode.replace('_', '-')}-{secrets.token_hex(3)}"
            store.put_workspace(ws, "pii bench")
            store.put_agent(Agent(ws, "admin", "Admin", role="admin"))
            store.put_agent(Agent(ws, "agent", "Agent", max_concurrent=5))
            admin = {"Authorization": "Bearer " + tokens.issue(key, kind="agent", workspace=ws, subject="admin")}
            requests.put(f"{stack.api_url}/workspaces/{ws}/bot", json={"enabled": False}, headers=admin,
                         timeout=30).raise_for_status()
            requests.put(f"{stack.api_url}/workspaces/{ws}/privacy", json={"maskPii": mode == "pii_masked"},
                         headers=admin, timeout=30).raise_for_status()
            agent = Socket(f"{stack.ws_url}?token={tokens.issue(key, kind='agent', workspace=ws, subject='agent')}")
            customer = Socket(f"{stack.ws_url}?token={tokens.issue(key, kind='visitor', workspace=ws, subject='c')}")
            sockets += [agent, customer]
            ack = customer.request({"action": "message", "clientMessageId": "open", "text": PLAIN}, type="ack")
            agent.expect(type="assigned", conversationId=ack["conversationId"], timeout=30)
            conversations[mode] = (ws, ack["conversationId"], customer, agent)

        latencies: dict[str, list[float]] = {mode: [] for mode in MODES}
        for i in range(messages):
            for mode in MODES[i % 3:] + MODES[: i % 3]:  # each mode first, second and third in turn
                ws, conversation, customer, agent = conversations[mode]
                text = PLAIN if mode == "plain" else TEXT
                started = time.perf_counter()
                customer.send({"action": "message", "conversationId": conversation, "clientMessageId": f"m{i}",
                               "text": text})
                frame = agent.expect(type="message", conversationId=conversation, clientMessageId=f"m{i}", timeout=30)
                latencies[mode].append((time.perf_counter() - started) * 1000)
                assert frame.get("masked", False) is (mode == "pii_masked")
                customer.expect(type="ack", clientMessageId=f"m{i}", timeout=30)

        kms, dynamodb = stack.client("kms"), stack.client("dynamodb")
        kms_ms, put_ms = [], []
        for i in range(messages):
            started = time.perf_counter()
            kms.encrypt(KeyId=schema.LOCAL_PII_KEY_ALIAS, Plaintext=b'["13812345678"]',
                        EncryptionContext={"kefu:workspace": "bench", "kefu:conversation": str(i)})
            kms_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            dynamodb.put_item(TableName=schema.CONVERSATIONS.local_name,
                              Item={"pk": {"S": f"bench-pii#{i}"}, "sk": {"S": "RAW"}, "text": {"S": TEXT}})
            put_ms.append((time.perf_counter() - started) * 1000)
        redact_us = []
        for _ in range(max(messages, 1000)):
            started = time.perf_counter()
            pii.redact(TEXT)
            redact_us.append((time.perf_counter() - started) * 1_000_000)
        for socket in sockets:
            socket.close()
    finally:
        stack.stop()

    e2e = {mode: _summary(latencies[mode]) for mode in MODES}
    return {
        "messages_per_mode": messages,
        "e2e_ms": e2e,
        "kms_encrypt_ms": _summary(kms_ms),
        "putitem_ms": _summary(put_ms),
        "redact_us": _summary(redact_us),
        "ratios": {
            "masked_vs_unmasked_p50": round(e2e["pii_masked"]["p50"] / e2e["pii_unmasked"]["p50"], 3),
            "masked_vs_plain_p50": round(e2e["pii_masked"]["p50"] / e2e["plain"]["p50"], 3),
            "masked_extra_p50_in_putitems": round((e2e["pii_masked"]["p50"] - e2e["pii_unmasked"]["p50"])
                                                  / statistics.median(put_ms), 3),
        },
    }
