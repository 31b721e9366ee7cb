"""Smoke run of the routing benchmark (`kefu bench routing`), small: 4 agents x 3 seats, 40 conversations.

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

pytestmark = pytest.mark.integration

AGENTS, CAPACITY, CONVERSATIONS, WARMUP, MEAN_HANDLE_S = 4, 3, 40, 8, 0.3
SCRIPT = (
    "import json; from kefu_bench.routing import run; "
    f"print(json.dumps(run(agents={AGENTS}, conversations={CONVERSATIONS}, capacity={CAPACITY}, "
    f"mean_handle_s={MEAN_HANDLE_S}, warmup={WARMUP}, seed=1, timeout_s=120)))"
)


@pytest.fixture(scope="module")
def report() -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT], check=False, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_keys_and_context(report):
    for key in ("assign_ms", "ddb_requests_per_assignment", "ddb_requests_per_assignment_by_operation",
                "capacity_violations", "load_spread", "load_spread_ramp_max", "wait_estimate_mae_s",
                "wait_estimate_mae_first_s", "real_wait_s", "queued", "wall_s", "queue_frames"):
        assert key in report, key
    assert (report["agents"], report["conversations"], report["capacity"]) == (AGENTS, CONVERSATIONS, CAPACITY)
    assert report["seats"] == AGENTS * CAPACITY
    assert report["mean_handle_s"] == MEAN_HANDLE_S and report["warmup"] == WARMUP
    assert report["wall_s"] > 0
    assert not report["config"]["timed_out"]
    assert report["config"]["loads_before_measured_phase"] == [0] * AGENTS  # the warm-up left nothing open


def test_every_conversation_assigned_and_closed(report):
    assert report["assigned"] == report["closed"] == CONVERSATIONS
    unfinished = report["unfinished"]
    assert unfinished["not_acked"] == unfinished["not_assigned"] == unfinished["not_closed"] == 0
    assert unfinished["queue_left_in_store"] == 0
    assert unfinished["closed_unassigned_in_store"] == {}  # nobody abandoned
    assert report["errors"] == []


def test_capacity_is_never_exceeded(report):
    assert report["capacity_violations"] == 0
    check = report["capacity_check"]
    assert check["store_samples"] > 0
    assert check["agent_peak_held_client_view"] <= CAPACITY + 1  # + 1: a close still in flight
    assert check["final_loads_out_of_range"] == []


def test_assignment_and_queue(report):
    seats = AGENTS * CAPACITY
    # all first messages at once: the seats fill at once, most of the rest waits (a close during the
    # ramp-up can give a seat to a conversation that has not reached the queue yet)
    assert report["queued"] >= (CONVERSATIONS - seats) // 2
    assert report["assign_ms"]["n"] == CONVERSATIONS - report["queued"]
    assert 0 < report["assign_ms"]["p50"] <= report["assign_ms"]["p99"]
    assert report["real_wait_s"]["n"] == report["queued"]
    assert 0 < report["real_wait_s"]["p50"] <= report["real_wait_s"]["p99"] <= report["real_wait_s"]["max"]
    assert report["queue_frames"] >= report["queue_frames_scored"] > 0
    assert report["load_spread"] is not None and report["load_spread"] <= 1
    assert report["load_at_saturation"]["max"] == CAPACITY  # someone was full when the first customer queued


def test_wait_estimate_is_sane(report):
    for key in ("wait_estimate_mae_s", "wait_estimate_mae_first_s"):
        value = report[key]
        assert value is not None and math.isfinite(value) and 0 <= value < 60, (key, value)
    # the workspace learned handle times in the warm-up: not the 300 s default
    assert 0 < report["server_mean_handle_s"]["before_measured_phase"] < 30


def test_requests_are_counted(report):
    per = report["ddb_requests_per_assignment"]
    assert per > 0
    by_operation = report["ddb_requests_per_assignment_by_operation"]
    assert sum(by_operation.values()) == pytest.approx(per, abs=0.1)
    assert sum(report["ddb_requests_per_assignment_by_store_method"].values()) == pytest.approx(per, abs=0.1)
    assert {"ws_message", "ws_route"} <= set(report["ddb_requests_per_assignment_by_function"])
    assert report["ddb_requests_total"] == pytest.approx(per * CONVERSATIONS, rel=0.01)
    # every assignment: at least the assign transaction; every close: the close transaction
    assert report["ddb_requests_per_assignment_by_store_method"]["assign"] >= 1
    assert report["ddb_requests_per_assignment_by_store_method"]["close"] == pytest.approx(1.0)
