"""`kefu dev` as a user runs it: one command up, URLs printed, SIGTERM leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.integration


def _descendants(pid: int) -> set[int]:
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_kefu_dev_starts_serves_and_stops_cleanly(tmp_path):
    kefu = Path(sys.executable).with_name("kefu")
    proc = subprocess.Popen([str(kefu), "dev", "--port", "0", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "KEFU_HOME": str(tmp_path)})
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        urls = json.loads(line)
        assert urls["websocket"].startswith("ws://127.0.0.1:") and urls["websocket"].endswith("/ws")
        assert "#token=" in urls["agent"]
        assert requests.get(urls["rest"] + "health", timeout=10).json() == {"status": "ok"}
        assert requests.get(urls["web"], timeout=10).status_code == 200
        # a token from `kefu token` of the same checkout (same KEFU_HOME) is accepted
        token = subprocess.check_output([str(kefu), "token", "agent", "--workspace", "demo", "--agent", "alice"],
                                        env={**os.environ, "KEFU_HOME": str(tmp_path)}, text=True).strip()
        from websockets.sync.client import connect

        with connect(f"{urls['websocket']}?token={token}", open_timeout=10) as ws:
            ws.send(json.dumps({"action": "sync", "conversationId": "nope", "afterSeq": 0}))
            assert json.loads(ws.recv(timeout=10))["code"] == "not_found"
        children = _descendants(proc.pid)
        assert children, "moto server and osmem-server should run as children"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children):
        assert time.monotonic() < deadline, f"left running: {[p for p in children if _alive(p)]}"
        time.sleep(0.1)


def test_kefu_token_rejects_bad_input():
    kefu = Path(sys.executable).with_name("kefu")
    result = subprocess.run([str(kefu), "token", "visitor", "--workspace", "Not Valid"], capture_output=True, text=True)
    assert result.returncode == 2 and "invalid workspace" in result.stderr
