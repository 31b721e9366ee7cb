"""The AWS stand-ins of the local stack: moto server (DynamoDB + Streams, Step Functions with
real execution, Secrets Manager) and osmem-server (OpenSearch API), as child processes that
die with us, and the tables created from kefu.schema.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from kefu import schema

LOCAL_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the parent dies, however it dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen, name: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer at {url} within {timeout_s:.0f} s")


class MotoServer:
    def __init__(self, host: str = "127.0.0.1", port: int | None = None, log_file: Path | None = None):
        self.host, self.port = host, port or free_port(host)
        self.url = f"http://{self.host}:{self.port}"
        self._log_file = log_file
        self.proc: subprocess.Popen | None = None

    def start(self) -> MotoServer:
        out = open(self._log_file, "ab") if self._log_file else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kefu_local.moto_server", self.host, str(self.port)],
            stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
            # TZ: moto's Step Functions Wait compares deadlines (UTC) with the local clock
            env={**os.environ, **LOCAL_CREDENTIALS, "TZ": "UTC"},
        )
        _wait_http(f"{self.url}/moto-api/", 30, self.proc, "moto server")
        # Step Functions: run state machines for real (Pass/Wait/Choice and DynamoDB tasks)
        request = urllib.request.Request(
            f"{self.url}/moto-api/config",
            data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        urllib.request.urlopen(request, timeout=5).close()
        return self

    def stop(self) -> None:
        _stop(self.proc)


class SearchServer:
    """osmem-server: the OpenSearch API in memory."""

    def __init__(self) -> None:
        self.server = None
        self.url = ""

    def start(self) -> SearchServer:
        from osmem_server import OsmemServer

        self.server = OsmemServer.start(freeze=False)
        self.url = self.server.url
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None


def _stop(proc: subprocess.Popen | None, grace_s: float = 5) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def create_tables(dynamodb, tables=schema.TABLES.values()) -> None:
    """The tables as the CDK stack defines them (same keys, indexes, streams, TTL)."""
    existing = set(dynamodb.list_tables()["TableNames"])
    for table in tables:
        name = table.local_name
        if name in existing:
            continue
        keys = [table.partition_key] + ([table.sort_key] if table.sort_key else [])
        for index in table.indexes:
            keys += [index.partition_key] + ([index.sort_key] if index.sort_key else [])
        definitions = {k.name: k.type for k in keys}
        spec = {
            "TableName": name,
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in definitions.items()],
            "KeySchema": _key_schema(table.partition_key, table.sort_key),
        }
        if table.indexes:
            spec["GlobalSecondaryIndexes"] = [
                {"IndexName": i.name, "KeySchema": _key_schema(i.partition_key, i.sort_key),
                 "Projection": {"ProjectionType": "ALL"}}
                for i in table.indexes
            ]
        if table.stream:
            spec["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": table.stream}
        dynamodb.create_table(**spec)
        if table.ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute}
            )


def create_buckets(s3, web_origins: list[str], buckets=schema.BUCKETS.values()) -> None:
    """The buckets of kefu.schema; a bucket browsers talk to (attachments: presigned POST and GET) gets the
    CORS rule the CDK stack gives it (infra/storage.py), for the local web origins. moto answers preflights
    by this rule (another origin gets 403), but it does not check a presigned POST's policy at all (expiry,
    signature, key, Content-Type, content-length-range): the message-time check of each attachment
    (kefu.attachments.verify, HeadObject) is what refuses a file that broke its ticket."""
    for bucket in buckets:
        try:
            s3.create_bucket(Bucket=bucket.local_name)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        if bucket.browser_access:
            s3.put_bucket_cors(Bucket=bucket.local_name, CORSConfiguration={"CORSRules": [{
                "AllowedMethods": ["POST", "GET", "HEAD"],
                "AllowedOrigins": list(web_origins),
                "AllowedHeaders": ["Content-Type", "Range"],
                "ExposeHeaders": ["ETag", "Content-Length", "Content-Type", "Content-Disposition"],
                "MaxAgeSeconds": 3600,
            }]})


def _key_schema(partition: schema.Key, sort: schema.Key | None) -> list[dict]:
    keys = [{"AttributeName": partition.name, "KeyType": "HASH"}]
    if sort:
        keys.append({"AttributeName": sort.name, "KeyType": "RANGE"})
    return keys


def create_escalation(sfn, sns) -> tuple[str, str]:
    """The ticket escalation state machine from the same ASL as the CDK stack, and its alert topic.
    Returns (state machine ARN, alert topic ARN)."""
    from kefu import escalation

    topic = sns.create_topic(Name=schema.LOCAL_ALERT_TOPIC)["TopicArn"]
    definition = escalation.definition_json({
        escalation.TABLE: schema.TICKETS.local_name, escalation.TOPIC: topic, escalation.BUS: "default",
    })
    arn = sfn.create_state_machine(name=schema.LOCAL_ESCALATION_NAME, definition=definition,
                                   roleArn="arn:aws:iam::123456789012:role/kefu-escalation")["stateMachineArn"]
    return arn, topic
