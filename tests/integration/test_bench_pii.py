"""Smoke run of `kefu bench pii` (20 messages per mode) in a child process (it starts its own local stack)."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = "import json; from kefu_bench.pii import run; print(json.dumps(run(messages=20)))"


def test_the_pii_bench_measures_every_mode_and_its_ratios():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for mode in ("plain", "pii_unmasked", "pii_masked"):
        e2e = report["e2e_ms"][mode]
        assert e2e["n"] == 20 and 0 < e2e["p50"] <= e2e["p99"], mode
    for key in ("kms_encrypt_ms", "putitem_ms", "redact_us"):
        assert report[key]["n"] >= 20 and report[key]["p50"] > 0, key
    assert report["ratios"]["masked_vs_unmasked_p50"] > 0
