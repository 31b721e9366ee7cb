"""A small chaos run (`kefu bench chaos`, its own process and local stack): customers and agents whose sockets
are killed at random, duplicate sends, reconnects with sync. Nothing lost, duplicated or out of order. The
benchmark runs 200 customers and 20 agents for several minutes (docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_killed_sockets_and_duplicate_sends_lose_nothing():
    kefu = Path(sys.executable).with_name("kefu")
    done = subprocess.run([str(kefu), "bench", "chaos", "--customers", "12", "--agents", "3", "--messages", "2",
                           "--ramp", "3", "--kill-every", "1", "--seed", "3"],
                          capture_output=True, text=True, timeout=600)
    report = json.loads(done.stdout)
    assert (report["lost"], report["duplicated"], report["out_of_order"]) == (0, 0, 0), report
    assert done.returncode == 0
    assert report["messages_sent"] >= 12 * 2 * 2  # every customer message and its answer
    assert report["chaos"]["sockets_killed"] >= 3 and report["chaos"]["reconnects"] >= 3
    assert report["delivered"] >= report["messages_stored"]  # customers alone see every stored message
