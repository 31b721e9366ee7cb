"""Smoke run of the answering benchmark (`kefu bench answering`) on the demo KB, small: 40 queries and
5 WebSocket conversations. In a child process: the benchmark starts its own local stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

LOCAL = Path(__file__).resolve().parents[2] / "local" / "kefu_local"


@pytest.fixture(scope="module")
def report() -> dict:
    kefu = Path(sys.executable).with_name("kefu")
    done = subprocess.run([str(kefu), "bench", "answering", "--kb", str(LOCAL / "demo_kb.jsonl"), "--queries",
                           str(LOCAL / "demo_queries.jsonl"), "--limit", "40", "--conversations", "5"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_the_report_has_every_key_the_issue_names(report):
    assert report["queries"] == 40 and 0 <= report["top1_accuracy"] <= 1
    shares = [report["decisions"][k]["share"] for k in ("answer", "review", "handoff")]
    assert abs(sum(shares) - 1) < 1e-3
    assert 0 <= report["ece"] <= 1
    for key in ("latency_ms", "search_ms"):
        assert 0 < report[key]["p50"] <= report[key]["p99"]
    assert report["kb"]["imported"] == 44 and report["kb"]["refused"] == 0


def test_conversations_over_websocket_get_a_bot_reply_each(report):
    played = report["conversations"]
    assert played["count"] == 5 and sum(played["decisions"].values()) == 5
    assert set(played["decisions"]) <= {"answer", "review", "handoff"}
    assert 0 < played["ack_ms"]["p50"] <= played["ack_ms"]["p99"]
    assert 0 < played["bot_reply_ms"]["p50"] <= played["bot_reply_ms"]["p99"]
    assert played["bot_reply_vs_ack_p50"] > 0
