"""Fault injection for the local stack: AWS requests that fail the way they fail on AWS.

The local Lambda runtime runs every handler in this process, so the place where all of their AWS
clients meet is botocore's HTTP send (``Endpoint._send``; PynamoDB and boto3 alike). A fault put
there is what a fault-injecting proxy in front of moto would produce, as seen by the client: an
HTTP error with the service's error body (throttling, 500), a connection reset before the request
reached the server, a response lost after the server applied the request, a read timeout, or a
slow answer. botocore's own retry handler and the adapters' error handling see exactly what they
would see on AWS. Nothing is patched unless a test asks for faults, and only for the rules it adds::

    with Faults() as faults:
        faults.add("throttle", operation="TransactWriteItems", match=workspace, times=2)
        ...
        assert faults.hits("throttle") == 2

A rule applies to requests of one service (the endpoint prefix: "dynamodb", "streams.dynamodb",
"execute-api", ...), optionally one operation (the X-Amz-Target's action, or PostToConnection /
GetConnection / DeleteConnection on the @connections API), and whose body or URL contains
``match`` (e.g. a test's workspace, so that nothing else in the process is hit). It fires for the
first ``times`` matching requests, for a ``share`` of them (seeded), for ``every`` n-th one (never
many in a row: botocore's retries get through), or for all of them.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import unquote

KINDS = ("throttle", "error500", "reset", "lost", "timeout", "slow")

# the error bodies of the JSON protocol (DynamoDB, Streams) and the REST one (@connections)
_JSON_ERRORS = {
    "throttle": (400, "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                 "The level of configured provisioned throughput for the table was exceeded."),
    "error500": (500, "com.amazonaws.dynamodb.v20120810#InternalServerError", "Internal server error"),
}
_REST_ERRORS = {
    "throttle": (429, "LimitExceededException", "Rate exceeded"),
    "error500": (500, "InternalServerErrorException", "Internal server error"),
}
_CONNECTIONS_OPERATIONS = {"POST": "PostToConnection", "GET": "GetConnection", "DELETE": "DeleteConnection"}


@dataclass
class Rule:
    kind: str
    service: str = "dynamodb"
    operation: str | None = None
    match: str | None = None
    times: int | None = None
    share: float | None = None
    every: int | None = None
    delay_s: float = 0.0
    seed: int = 0
    hits: int = 0
    seen: int = 0
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; one of {KINDS}")
        self._random = random.Random(self.seed)

    def applies(self, service: str, operation: str, text: str) -> bool:
        if service != self.service or (self.operation is not None and operation != self.operation):
            return False
        if self.match is not None and self.match not in text:
            return False
        self.seen += 1
        if self.times is not None and self.hits >= self.times:
            return False
        if self.share is not None and self._random.random() >= self.share:
            return False
        if self.every is not None and self.seen % self.every:
            return False
        self.hits += 1
        return True


class Faults:
    """Install with ``with Faults() as faults`` (or install()/uninstall()); add rules while installed."""

    _active: Faults | None = None
    _original = None

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.log: list[tuple[str, str, str]] = []  # (kind, service, operation) of every injected fault
        self._lock = threading.Lock()

    def add(self, kind: str, **options) -> Rule:
        rule = Rule(kind, **options)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def hits(self, kind: str | None = None) -> int:
        with self._lock:
            return sum(1 for k, _, _ in self.log if kind is None or k == kind)

    # ------------------------------------------------------------ installing

    def install(self) -> Faults:
        from botocore.endpoint import Endpoint

        if Faults._active is not None:
            raise RuntimeError("another Faults is installed")
        if Faults._original is None:
            Faults._original = Endpoint._send
        original = Faults._original
        faults = self

        def send(endpoint, request):
            return faults._send(original, endpoint, request)

        Endpoint._send = send
        Faults._active = self
        return self

    def uninstall(self) -> None:
        from botocore.endpoint import Endpoint

        if Faults._active is self:
            Endpoint._send = Faults._original
            Faults._active = None

    def __enter__(self) -> Faults:
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()

    # ------------------------------------------------------------ the faults

    def _choose(self, service: str, operation: str, text: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.applies(service, operation, text):
                    self.log.append((rule.kind, service, operation))
                    return rule
        return None

    def _send(self, original, endpoint, request):
        from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

        service = getattr(endpoint, "_endpoint_prefix", "")
        operation = _operation(request)
        body = request.body
        if hasattr(body, "read"):  # a stream: botocore can rewind it for a retry, so we may peek
            position = body.tell()
            text = body.read()
            body.seek(position)
        else:
            text = body or b""
        text = (text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)) + " " + unquote(request.url)
        rule = self._choose(service, operation, text)
        if rule is None:
            return original(endpoint, request)
        if rule.kind in ("throttle", "error500"):
            return _error_response(request, rule.kind, json_protocol="X-Amz-Target" in request.headers)
        if rule.kind == "reset":  # the connection broke before the request reached the server
            raise ConnectionClosedError(endpoint_url=request.url)
        if rule.kind == "timeout":  # no answer in time (the request may or may not have been applied)
            if rule.delay_s:
                time.sleep(rule.delay_s)
            raise ReadTimeoutError(endpoint_url=request.url)
        if rule.kind == "slow":
            time.sleep(rule.delay_s)
            return original(endpoint, request)
        # "lost": the server applied the request, its answer never arrived
        response = original(endpoint, request)
        _ = response.content
        raise ConnectionClosedError(endpoint_url=request.url)


def _operation(request) -> str:
    target = request.headers.get("X-Amz-Target")
    if target:
        return (target.decode() if isinstance(target, bytes) else target).rsplit(".", 1)[-1]
    if "/@connections/" in request.url:
        return _CONNECTIONS_OPERATIONS.get(request.method, request.method)
    return request.method


class _Raw:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_):
        yield self.data


def _error_response(request, kind: str, *, json_protocol: bool):
    from botocore.awsrequest import AWSResponse

    if json_protocol:
        status, code, message = _JSON_ERRORS[kind]
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "fault-injected"}
        body = json.dumps({"__type": code, "message": message}).encode()
    else:
        status, code, message = _REST_ERRORS[kind]
        headers = {"Content-Type": "application/json", "x-amzn-ErrorType": code, "x-amzn-RequestId": "fault-injected"}
        body = json.dumps({"message": message}).encode()
    return AWSResponse(request.url, status, headers, _Raw(body))
