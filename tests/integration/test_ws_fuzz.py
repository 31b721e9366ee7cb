"""Hypothesis over every WebSocket action through real sockets (`kefu bench fuzz`, in its own process and
local stack): no frame gets an internal error, a stack trace or no answer, and the conversation and the
stack survive. The benchmark runs 10,000 frames (docs/benchmarks.md); make test runs fewer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FRAMES = int(os.environ.get("KEFU_WS_FUZZ_FRAMES", "800"))


def test_every_websocket_action_survives_generated_frames():
    kefu = Path(sys.executable).with_name("kefu")
    done = subprocess.run([str(kefu), "bench", "fuzz", "--frames", str(FRAMES), "--seed", "1"],
                          capture_output=True, text=True, timeout=900)
    report = json.loads(done.stdout)
    assert report["failures"] == [] and done.returncode == 0, report["failures"]
    assert report["frames"] == FRAMES
    # every route was reached, and most frames got past validation somewhere
    assert {"message", "typing", "sync", "inbox", "route", "close", "csat", "handoff", "assign", "presence",
            "snapshot", "rate", "suggestion", "offline_form", "cancel", "(raw)"} <= set(report["by_route"])
    assert {"ack", "invalid_frame", "malformed_json", "unknown_action"} <= set(report["replies"])
    assert report["history_messages"] >= 1
