"""Smoke run of the message-path benchmark (`kefu bench messages`), small: 3 conversations x 5 messages.

The benchmark starts its own local stack, so it runs in a child process: the local stack binds
PynamoDB's models and kefu.wiring's cached adapters to the first endpoint a process sees, and
the session stack of the other integration tests must not be disturbed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from kefu import schema

pytestmark = pytest.mark.integration

SCRIPT = "import json; from kefu_bench.messages import run; print(json.dumps(run(conversations=3, messages=5)))"


@pytest.fixture(scope="module")
def report() -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_latency_is_measured(report):
    e2e = report["e2e_ms"]
    assert e2e["n"] == 3 * 5
    assert 0 < e2e["p50"] <= e2e["p99"]
    assert e2e["mean"] > 0
    for key in ("putitem_ms", "putitem_idle_ms"):
        assert report[key]["n"] > 0 and 0 < report[key]["p50"] <= report[key]["p99"]
    assert report["putitem_ms"]["n"] + report["putitem_idle_ms"]["n"] >= 300
    assert report["unloaded"]["e2e_ms"]["n"] > 0


def test_steady_path_requests(report):
    assert 1 <= report["ddb_requests_per_message"] <= 3
    by_operation = report["ddb_requests_by_operation"]
    # the steady path: one Query (META + fan-out list) and one TransactWriteItems per message; the stream's
    # analytics add a few batched TransactWriteItems (one per run of records, not one per message)
    assert by_operation["dynamodb.Query"] == pytest.approx(1.0)
    assert 1.0 <= by_operation["dynamodb.TransactWriteItems"] <= 1.5
    assert report["ddb_requests_per_message_by_source"]["handlers"] == pytest.approx(2.0)
    assert report["ddb_requests_per_message_by_source"]["stream_metrics"] <= 0.5
    assert not any(k.startswith("dynamodbstreams.") for k in by_operation)
    assert report["first_message_ddb_requests"] > report["ddb_requests_per_message"]
    assert report["post_to_connection_per_message"] == pytest.approx(1.0)  # to the agent only
    units = report["ddb_units_per_message"]
    assert units["wru"] >= 6  # 3 items in a transaction, 2 WRU each
    assert units["rru"] == pytest.approx(0.5)


def test_handler_cpu(report):
    assert report["handler_cpu_ms_per_message"] > 0
    assert set(report["handler_cpu_ms_by_function"]) == {"ws_message"}
    assert "stream_metrics" not in report["handler_cpu_ms_by_function"]
    assert report["stream_metrics"]["cpu_ms_per_message"] >= 0
    # what runs after the message path, from the conversations stream, is reported on its own
    assert {"stream_metrics", "webhooks_conversations", "channel_outbound"} <= set(
        report["stream_consumers_cpu_ms_per_message"])


def test_cold_imports(report):
    cold = report["cold_import_ms"]
    assert set(cold) == {f.name for f in schema.FUNCTIONS} | {"boto3", "ratio_max"}
    assert all(isinstance(cold[k], float) and cold[k] > 0 for k in cold)
    assert cold["ratio_max"] == pytest.approx(max(cold[f.name] for f in schema.FUNCTIONS) / cold["boto3"], rel=0.02)
    assert not report["errors"]["cold_import"]
    # importing a handler must not touch the network
    assert isinstance(report["cold_import_network"], str)


def test_cost_and_targets(report):
    usd = report["usd_per_1000_conversations"]
    assert 0 < usd < report["amazon_connect_usd_per_1000_conversations"] == pytest.approx(80.0)
    breakdown = report["cost_breakdown"]["usd_per_1000_conversations_by_service"]
    assert sum(breakdown.values()) == pytest.approx(usd, abs=1e-3)
    assert report["assumptions"]
    assert set(report["targets"]) == {
        "ddb_requests_per_message_le_3",
        "e2e_p99_le_5x_putitem_p99",
        "handler_cold_imports_le_3x_boto3",
        "usd_per_1000_conversations_le_0_20",
    }
    assert all(isinstance(v, bool) for v in report["targets"].values())
    assert report["targets"]["ddb_requests_per_message_le_3"]


def test_config_and_errors(report):
    config = report["config"]
    assert (config["conversations"], config["messages"]) == (3, 5)
    assert config["machine_cores"] >= 1 and config["python"].count(".") == 2
    assert report["errors"]["client"] == []
    assert report["errors"]["handlers"] == {}
    assert not any(isinstance(v, float) and math.isnan(v) for v in report["e2e_ms"].values())
