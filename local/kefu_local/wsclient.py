"""A blocking WebSocket client for tests and benchmarks: it keeps the frames it was not asked for yet."""

from __future__ import annotations

import json
import time

from websockets.sync.client import connect


class Socket:
    """A WebSocket client that keeps the frames it has not been asked for yet."""

    def __init__(self, url: str):
        self.ws = connect(url, open_timeout=10, max_size=2**21)
        self.backlog: list[dict] = []

    def send(self, frame) -> None:
        self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    def expect(self, match=None, timeout: float = 10.0, **fields) -> dict:
        """The first frame with these field values (and for which `match` is true), waiting if needed."""

        def wanted(frame):
            return all(frame.get(k) == v for k, v in fields.items()) and (match is None or match(frame))

        for i, frame in enumerate(self.backlog):
            if wanted(frame):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no frame like {fields} within {timeout} s; got {self.backlog}")
            try:
                frame = json.loads(self.ws.recv(timeout=remaining))
            except TimeoutError:
                continue
            if wanted(frame):
                return frame
            self.backlog.append(frame)

    def request(self, frame: dict, **expect) -> dict:
        """Send and wait for the direct reply (an ack, a sync, an error...)."""
        self.send(frame)
        return self.expect(**expect)

    def quiet(self, seconds: float = 0.5) -> list[dict]:
        """Whatever arrives within `seconds` (to prove that nothing else does)."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                self.backlog.append(json.loads(self.ws.recv(timeout=remaining)))
            except TimeoutError:
                break
        return self.backlog

    def close(self) -> None:
        self.ws.close()
