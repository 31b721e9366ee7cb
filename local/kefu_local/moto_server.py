"""moto server, as `moto_server` runs it, plus one fidelity fix: DynamoDB writes are atomic.

moto applies a conditional write or a transaction in several steps without a lock, so two
concurrent TransactWriteItems can both pass their conditions (we saw two messages get the
same seq). Real DynamoDB serialises them. Here every DynamoDB write request holds one lock;
reads stay concurrent, as real DynamoDB's per-item consistency allows. Stream reads take the
lock too: a cancelled transaction is rolled back by restoring a copy of the tables, and a
stream reader must not see the records of a write that is about to be undone.

A second one: TransactWriteItems is idempotent by its ClientRequestToken, as on DynamoDB (botocore
fills one in and keeps it across its retries). moto ignores the token, so a transaction whose
answer was lost and that botocore sent again failed its own conditions (a message taken for a
resend of itself, and never fanned out); here a repeat of a token that succeeded within 10 minutes
gets the first answer and changes nothing (a different request under a used token gets
IdempotentParameterMismatchException).

Run: python -m kefu_local.moto_server HOST PORT
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import io
import json
import os
import signal
import sys
import threading
import time
import types
from collections import OrderedDict

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

DYNAMODB_WRITES = {
    "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems", "TransactGetItems",
}


IDEMPOTENCY_WINDOW_S = 600  # DynamoDB: a client request token is valid for 10 minutes


class AtomicDynamoDBWrites:
    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        # token -> (at, digest, status, headers, body), oldest first
        self.tokens: OrderedDict[str, tuple[float, str, str, list, list]] = OrderedDict()

    def __call__(self, environ, start_response):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target.startswith("DynamoDB_") and target.endswith(".TransactWriteItems"):
            with self.lock:
                return self._transact(environ, start_response)
        if (target.startswith("DynamoDB_") and target.rsplit(".", 1)[-1] in DYNAMODB_WRITES) or target.startswith(
            "DynamoDBStreams_"
        ):
            with self.lock:
                # consume the whole response inside the lock: moto computes it lazily
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)

    def _transact(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = {}
        token = request.pop("ClientRequestToken", None) if isinstance(request, dict) else None
        if not token:
            return list(self.app(environ, start_response))
        now = time.monotonic()
        while self.tokens and now - next(iter(self.tokens.values()))[0] > IDEMPOTENCY_WINDOW_S:
            self.tokens.popitem(last=False)
        digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        if token in self.tokens:
            _, seen, status, headers, chunks = self.tokens[token]
            if seen == digest:
                start_response(status, headers)
                return chunks
            error = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#IdempotentParameterMismatchException",
                                "message": "The request uses the same client token as a previous, but non-identical "
                                           "request."}).encode()
            start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.0"),
                                               ("Content-Length", str(len(error)))])
            return [error]
        answer: list = []

        def remember(status, headers, exc_info=None):
            answer[:] = [status, list(headers)]
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        chunks = list(self.app(environ, remember))
        if answer and answer[0].startswith("200"):
            self.tokens[token] = (now, digest, answer[0], answer[1], chunks)
        return chunks


def cheap_transactions() -> None:
    """moto deep-copies every table a transaction touches, for rollback: O(table size) per write,
    which made each message slower as the tables grew. Instead, check every condition first
    (nothing is written when one fails, as in DynamoDB) and skip the table copy; under the
    write lock the conditions still hold when moto applies the writes. A request that fails
    validation halfway could leave a partial write here; our adapters send none."""
    from moto.dynamodb import models
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import TransactionCanceledException
    from moto.dynamodb.models.table import Table

    models.copy = types.SimpleNamespace(
        deepcopy=lambda value, memo=None: value if isinstance(value, Table) else copy.deepcopy(value, memo),
        copy=copy.copy,
    )
    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        reasons, failed = [], False
        for entry in transact_items:
            try:
                op_type, op = next(iter(entry.items()))
                condition = op.get("ConditionExpression")
                if condition is None:
                    reasons.append((None, None, None))
                    continue
                table = self.get_table(op["TableName"])
                if op_type == "Put":
                    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = op["Item"][table.range_key_attr]
                else:
                    key = op["Key"]
                current = self.get_item(op["TableName"], key)
                check = get_filter_expression(condition, op.get("ExpressionAttributeNames"),
                                              op.get("ExpressionAttributeValues"))
                if check.expr(current):
                    reasons.append((None, None, None))
                    continue
                old = None
                if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                    old = current.to_json()["Attributes"]
                reasons.append(("ConditionalCheckFailed", "The conditional request failed", old))
                failed = True
            except Exception:
                return original(self, transact_items)  # let moto answer malformed requests its own way
        if failed:
            raise TransactionCanceledException(reasons)
        return original(self, transact_items)

    models.DynamoDBBackend.transact_write_items = transact_write_items


def partition_queries() -> None:
    """moto answers a Query on a table by filtering and sorting every item of the table: O(table
    size) per Query, so every read got slower as a test session or a benchmark filled the tables.
    A Query names one partition; read just that one (DynamoDB does the same)."""
    from moto.dynamodb.models.table import Table

    scope = threading.local()
    original_query, original_all_items = Table.query, Table.all_items

    def all_items(self):
        hash_key = getattr(scope, "hash_key", None)
        if hash_key is not None and self.range_key_attr:
            return list(self.items[hash_key].values()) if hash_key in self.items else []
        return original_all_items(self)

    signature = inspect.signature(original_query)

    def query(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        index_name = bound.arguments.get("index_name")
        scope.hash_key = bound.arguments.get("hash_key") if index_name is None else None
        try:
            return original_query(self, *args, **kwargs)
        finally:
            scope.hash_key = None

    Table.all_items, Table.query = all_items, query


def fast_reads() -> None:
    """moto renders every response through a generic, shape-driven serializer: about a millisecond
    per item, so a Query of a 400-item queue took half a second. Query and GetItem results are
    DynamoDB JSON already; dump them directly (same bytes once parsed: checked against moto's own
    serializer in tests/integration/test_local_stack.py)."""
    import json
    import uuid

    from moto.dynamodb.responses import DynamoResult

    original = DynamoResult.execute_result

    def execute_result(self, context):
        if context.operation_model.name not in FAST_READS:
            return original(self, context)
        headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-requestid": uuid.uuid4().hex}
        return 200, headers, json.dumps(self.result, separators=(",", ":"))

    DynamoResult.execute_result = execute_result


FAST_READS = ("Query", "GetItem")


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    cheap_transactions()
    partition_queries()
    fast_reads()
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, AtomicDynamoDBWrites(app), threaded=True, request_handler=KeepAliveHandler)


class KeepAliveHandler(MotoRequestHandler):
    """HTTP/1.1: botocore keeps its connections open instead of a TCP handshake (and a new server
    thread) per request. Responses carry Content-Length, which keep-alive needs."""

    protocol_version = "HTTP/1.1"


if __name__ == "__main__":
    main()
